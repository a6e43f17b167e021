"""The scoring side of personalization with the shipped model, a LocalBlobStore and no networks: per-face vectors and
the rate pool written at scoring time, the rating.submitted consumer (idempotent), and the internal personal API."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.events import RatingSubmitted
from libs.common.ids import new_id
from libs.common.settings import ScoringSettings, Settings
from services.scoring.features_store import FaceFeatureStore, RatePool, store_personalization
from services.scoring.personal_api import install_personal_api
from services.scoring.personalize.model import PersonalModel
from services.scoring.ratings_consumer import (
    PersonalizeStage,
    handle_rating_submitted,
    load_personal_model,
    load_rater_state,
)


@pytest.fixture(scope="module")
def model() -> PersonalModel:
    return load_personal_model(Settings(scoring=ScoringSettings(min_ratings=3)))


def vector(model: PersonalModel, seed: int) -> np.ndarray:
    """A plausible face vector: the item map's training mean plus noise on its own scale."""
    rng = np.random.default_rng(seed)
    return (model.item_map.mean + rng.normal(size=model.item_map.mean.shape) * model.item_map.scale).astype(np.float32)


async def scored_photo(blobs: LocalBlobStore, model: PersonalModel, *, owner: str | None, rateable: bool,
                       seed: int, minor_face: bool = False) -> str:
    """A photo as the pipeline leaves it: upload's meta, scoring's result, vectors and pool entry."""
    photo_id = new_id()
    meta = PhotoMeta(photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="x" * 64,
                     visitor_id=owner, rateable=rateable, rate_id=new_id() if rateable else None, width=512,
                     height=512)
    await blobs.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")
    faces = [{"index": 0, "attractiveness": 6.5}]
    vectors: list[tuple[int, np.ndarray | None]] = [(0, vector(model, seed))]
    if minor_face:
        faces.append({"index": 1, "withheld_reason": "minor", "p_minor": 0.9})
        vectors.append((1, None))
    await store_personalization(blobs, photo_id, vectors)
    doc = ResultDocument(photo_id=photo_id, status="done", faces=faces, scored_at=datetime.now(UTC))
    await blobs.put(keys.result(photo_id), doc.model_dump_json().encode(), "application/json")
    return photo_id


def rating(rater: str, photo_id: str, value: int = 1, face_index: int = 0) -> RatingSubmitted:
    return RatingSubmitted(visitor_id=rater, photo_id=photo_id, face_index=face_index, scale="hot_or_not",
                           rating=value)


async def test_vectors_and_pool_follow_consent_and_minors(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    opted_in = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=1, minor_face=True)
    private = await scored_photo(blobs, model, owner=new_id(), rateable=False, seed=2)
    features = FaceFeatureStore(blobs)
    assert await features.load(opted_in, 0) is not None and await features.load(private, 0) is not None
    assert await features.load(opted_in, 1) is None  # the minor never gets a vector
    entries = await RatePool(blobs).entries()
    assert [(e.photo_id, e.faces) for e in entries] == [(opted_in, [0])]
    single, prefixes = keys.derived_keys_and_prefixes(opted_in)
    assert keys.rate_pool_entry(opted_in) in single and keys.face_features_prefix(opted_in) in prefixes


async def test_the_same_rating_twice_counts_once(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=3)
    rater = new_id()
    event = rating(rater, photo_id)
    assert await handle_rating_submitted(event, stage) == "added"
    assert await handle_rating_submitted(event, stage) == "duplicate"  # redelivery
    assert await handle_rating_submitted(rating(rater, photo_id, 0), stage) == "duplicate"  # double click
    state = await stage.states.load(rater)
    assert state is not None and state.n_ratings == 1
    assert state.history[0]["event_id"] == str(event.event_id)
    assert len(stage.locks) == 0


async def test_rating_a_face_without_features_is_dropped(tmp_path: Path, model: PersonalModel) -> None:
    stage = PersonalizeStage.from_blobs(model, LocalBlobStore(tmp_path))
    assert await handle_rating_submitted(rating(new_id(), new_id()), stage) == "no_features"


async def test_personal_api_turns_personal_after_k_ratings(aiohttp_client, tmp_path: Path,
                                                           model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    app = web.Application()
    install_personal_api(app, stage)
    client = await aiohttp_client(app)
    me, other = new_id(), new_id()
    mine = await scored_photo(blobs, model, owner=me, rateable=True, seed=10, minor_face=True)
    theirs = [await scored_photo(blobs, model, owner=other, rateable=True, seed=20 + i) for i in range(5)]

    resp = await client.get("/api/v1/rate/next", params={"viewer": me, "count": "10"})
    picked = [(f["photo_id"], f["face_index"]) for f in (await resp.json())["faces"]]
    assert sorted(picked) == sorted((p, 0) for p in theirs)  # never my own photo, never a minor

    resp = await client.get("/api/v1/personal", params={"viewer": me, "photo_id": mine})
    body = await resp.json()
    assert body["faces"][0] == {"index": 0, "personal_score": 6.5, "source": "global", "n_ratings": 0,
                                "face_ratings": 0}
    assert "personal_score" not in body["faces"][1]  # withheld stays withheld

    for i, photo_id in enumerate(theirs[: model.min_ratings]):
        await handle_rating_submitted(rating(me, photo_id, i % 2), stage)
    body = await (await client.get("/api/v1/personal", params={"viewer": me, "photo_id": mine})).json()
    face = body["faces"][0]
    assert face["source"] == "personal" and face["n_ratings"] == model.min_ratings
    assert 1.0 <= face["personal_score"] <= 10.0

    resp = await client.get("/api/v1/rate/next", params={"viewer": me, "count": "10"})
    left = {f["photo_id"] for f in (await resp.json())["faces"]}
    assert left == set(theirs[model.min_ratings:])  # rated faces are not asked again

    assert (await client.get("/api/v1/personal", params={"viewer": "bad id"})).status == 400
    assert (await client.get("/api/v1/personal", params={"viewer": me, "photo_id": new_id()})).status == 404
    assert (await client.get("/api/v1/rate/next", params={"count": "0"})).status == 400


async def test_state_for_another_model_version_is_replayed(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=30)
    rater = new_id()
    await handle_rating_submitted(rating(rater, photo_id), stage)
    old = await stage.states.load(rater)
    assert old is not None
    old.model_version = "older-model"
    await stage.states.save(old)
    assert await handle_rating_submitted(rating(rater, photo_id), stage) == "duplicate"  # the replay kept it
    second = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=31)
    assert await handle_rating_submitted(rating(rater, second), stage) == "added"
    state = await stage.states.load(rater)
    assert state is not None and state.model_version == model.version and state.n_ratings == 2


async def test_a_vector_stored_by_an_older_model_reads_as_absent(tmp_path: Path, model: PersonalModel) -> None:
    """A model with other feature blocks (e.g. before the face embedding) wrote vectors of another length: they must
    fall back to the global score / be skipped, never reach the item map with the wrong shape."""
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=7)
    old_length = vector(model, 8)[:-128]  # as many values as the previous model's blocks (no embedding)
    await store_personalization(blobs, photo_id, [(0, old_length)])
    assert await FaceFeatureStore(blobs).load(photo_id, 0) is not None  # no expectation: read as stored
    assert await stage.features.load(photo_id, 0) is None
    assert await handle_rating_submitted(rating(new_id(), photo_id), stage) == "no_features"


async def test_replay_puts_each_rating_on_the_new_models_scale(tmp_path: Path, model: PersonalModel) -> None:
    """A model retrained on another dataset (1–10 instead of 1–7, another μ): a "hot" given under the old model must
    replay as a hot on the new scale, not as its old model-scale number (which would read as a "not" there)."""
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    rater = new_id()
    hot = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=40)
    ten = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=41)
    assert await handle_rating_submitted(rating(rater, hot, 1), stage) == "added"
    ten_out_of_ten = RatingSubmitted(visitor_id=rater, photo_id=ten, face_index=0, scale="1to10", rating=10)
    assert await handle_rating_submitted(ten_out_of_ten, stage) == "added"
    retrained = dataclasses.replace(model, version="retrained-1to10", scale_min=1.0, scale_max=10.0, mu=6.0,
                                    rating_sd=1.5, display_slope=0.0, display_offset=0.0)
    replayed = await load_rater_state(PersonalizeStage.from_blobs(retrained, blobs), rater)
    assert replayed.model_version == retrained.version and replayed.n_ratings == 2
    assert [h["rating"] for h in replayed.history] == pytest.approx(
        [retrained.to_model_scale("hot_or_not", 1), retrained.to_model_scale("1to10", 10)])
    assert replayed.history[0]["rating"] > retrained.mu
