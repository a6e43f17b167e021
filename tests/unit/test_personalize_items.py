"""Warm faces: a face's item vector learned from the ratings it receives (personalize/item.py), the face.rated
follow-up of the ratings consumer, and the face-items consumer (idempotent, model-versioned, deletion-aware)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus.memory import RecordingPublisher
from libs.common.events import FaceRated, decode_event, derived_event_id
from libs.common.ids import new_id
from libs.common.settings import ScoringSettings, Settings
from services.scoring import ratings_consumer
from services.scoring.features_store import store_personalization
from services.scoring.personal_api import install_personal_api
from services.scoring.personalize.item import ItemState, item_posterior, observations_from_ratings
from services.scoring.personalize.model import PersonalModel, fit_personal_model
from services.scoring.personalize.store import BlobItemStateStore, CachedItemStates
from services.scoring.personalize.visual import fit_ridge_loo
from services.scoring.ratings_consumer import (
    PersonalizeStage,
    handle_face_rated,
    handle_rating_submitted,
    load_personal_model,
)
from tests.unit.test_personal_consumer import rating, scored_photo


@pytest.fixture(scope="module")
def model() -> PersonalModel:
    return load_personal_model(Settings(scoring=ScoringSettings(min_ratings=3)))


def test_no_ratings_give_the_pixels_prediction_and_many_give_the_truth() -> None:
    rng = np.random.default_rng(0)
    dim, noise = 4, 0.25
    truth = rng.normal(size=dim)  # [b_i, q_i]
    prior = truth + rng.normal(0, 1.0, dim)  # the pixels' guess, off by about 1
    zero = item_posterior(prior, np.ones(dim), np.zeros((dim, dim)), np.zeros(dim), noise)
    np.testing.assert_allclose(zero, prior)
    raters = np.hstack([rng.normal(size=(2000, dim - 1)), rng.normal(0, 0.5, (2000, 1))])  # [p_u, b_u]
    mu = 4.0
    ratings = mu + raters[:, -1] + truth[0] + raters[:, :-1] @ truth[1:] + rng.normal(0, np.sqrt(noise), 2000)
    ztz, ztt = observations_from_ratings(raters, ratings, mu)
    many = item_posterior(prior, np.ones(dim), ztz, ztt, noise)
    np.testing.assert_allclose(many, truth, atol=0.05)
    few = item_posterior(prior, np.ones(dim), *observations_from_ratings(raters[:3], ratings[:3], mu), noise)
    assert np.abs(few - truth).sum() < np.abs(prior - truth).sum()  # three ratings already pull towards the truth


def test_state_accumulates_the_same_statistics_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    weights, ratings = rng.normal(size=(5, 4)), rng.normal(4, 1, 5)
    state = ItemState.new("p/0", "m-1", 4)
    for i, (w, y) in enumerate(zip(weights, ratings, strict=True)):
        state = state.with_rating(f"r{i}", w, float(y), 4.0)
    ztz, ztt = observations_from_ratings(weights, ratings, 4.0)
    np.testing.assert_allclose(state.ztz, ztz)
    np.testing.assert_allclose(state.ztt, ztt)
    again = ItemState.from_bytes(state.to_bytes())
    assert again.raters == [f"r{i}" for i in range(5)] and again.n_ratings == 5
    np.testing.assert_allclose(again.ztz, state.ztz)
    with pytest.raises(ValueError, match="format"):
        ItemState.from_bytes(b'{"format": 99}')


def test_ridge_map_keeps_a_residual_variance_per_output() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 5))
    y = np.stack([x[:, 0] + rng.normal(0, 0.1, 60), rng.normal(0, 2.0, 60)], axis=1)  # predictable, pure noise
    ridge = fit_ridge_loo(x, y)
    assert ridge.residual_var.shape == (2,)
    assert ridge.residual_var[0] < 0.5 and ridge.residual_var[1] > 3.0
    assert np.mean(ridge.residual_var) == pytest.approx(ridge.loo_mse)


def test_model_round_trip_keeps_item_variances_and_warm_faces_move(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n_raters, n_faces = 120, 30
    features = rng.normal(size=(n_faces, 3))  # unrelated to how good the faces are: the pixels' prior is vague
    ratings = 4 + rng.normal(0, 1.0, n_faces)[None, :] + rng.normal(0, 0.5, (n_raters, n_faces))
    model, _ = fit_personal_model(ratings, features, (1.0, 7.0), rank=2, reg=1.0)
    model.save(tmp_path / "m.npz")
    loaded = PersonalModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.item_map.residual_var, model.item_map.residual_var, rtol=1e-6)
    face = rng.normal(size=(1, 3))
    cold_offset, _ = loaded.item_params(face)
    item = loaded.new_item_state("p/0")
    for i in range(40):  # forty raters with average weights all say "much better than its pixels suggest"
        item = loaded.add_item_rating(item, np.zeros(loaded.dim), float(cold_offset[0]) + 2.0, f"r{i}")
    warm_offset, _ = loaded.item_params(face, [item])
    assert warm_offset[0] == pytest.approx(cold_offset[0] + 2.0, abs=0.3)
    stale = ItemState(item.face, "another-model", item.ztz, item.ztt, item.raters, item.ratings)
    assert loaded.item_params(face, [stale])[0][0] == pytest.approx(cold_offset[0])  # other versions are ignored
    replayed = loaded.current_item(stale, "p/0")  # ... until replayed into this model's latent space
    assert replayed.model_version == loaded.version and replayed.raters == item.raters
    assert loaded.item_params(face, [replayed])[0][0] > cold_offset[0] + 1.5
    assert loaded.current_item(item, "p/0") is item and loaded.current_item(None, "p/0").n_ratings == 0

    # the visitors' score: hidden below the threshold, then what an average rater of the warm face would give
    few = loaded.new_item_state("p/1")
    for i in range(loaded.crowd_min_ratings - 1):
        few = loaded.add_item_rating(few, np.zeros(loaded.dim), float(cold_offset[0]) + 2.0, f"r{i}")
    assert loaded.crowd_score(face[0], few) is None
    crowd = loaded.crowd_score(face[0], item)
    assert crowd is not None and crowd > float(loaded.to_display(cold_offset[0])) + 2.0  # 2 points of 1–7 ≈ 3 of 1–10
    assert loaded.crowd_score(face[0], stale) is None


def test_replay_moves_a_faces_ratings_onto_the_new_models_scale(model: PersonalModel) -> None:
    """A model retrained on another dataset (1–10, another μ): thirty "hot" ratings stored on the old model's 1–7 scale
    must still lift the face above its pixels' prediction after the replay, not sink it below μ."""
    face = model.item_map.mean
    item = model.new_item_state("p/0")
    for i in range(30):
        item = model.add_item_rating(item, model.prior.population_mean, model.to_model_scale("hot_or_not", 1), f"r{i}")
    item = ItemState.from_bytes(item.to_bytes())  # as stored
    retrained = dataclasses.replace(model, version="retrained-1to10", scale_min=1.0, scale_max=10.0, mu=6.0,
                                    rating_sd=1.5, display_slope=0.0, display_offset=0.0)
    replayed = retrained.current_item(item, "p/0")
    assert replayed.ratings == pytest.approx([retrained.to_model_scale("hot_or_not", 1)] * 30)
    pixels_only = retrained.crowd_score(face, dataclasses.replace(replayed, ztz=0 * replayed.ztz, ztt=0 * replayed.ztt))
    crowd = retrained.crowd_score(face, replayed)
    assert pixels_only is not None and crowd is not None and crowd > pixels_only + 0.5


async def test_rating_publishes_face_rated_before_saving(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=40)
    publisher = RecordingPublisher()
    rater = new_id()
    event = rating(rater, photo_id, 1)
    assert await handle_rating_submitted(event, stage, publisher.publish) == "added"
    (follow_up,) = publisher.of_type(FaceRated)
    assert isinstance(follow_up, FaceRated)
    assert follow_up.event_id == derived_event_id(event, FaceRated.TOPIC) and follow_up.trace_id == event.trace_id
    assert follow_up.model_version == model.version and len(follow_up.rater_weights) == model.dim
    assert follow_up.rating == pytest.approx(model.to_model_scale("hot_or_not", 1))
    assert follow_up.partition_key == photo_id  # one consumer owns each face
    assert decode_event(follow_up.to_bytes(), FaceRated.TOPIC) == follow_up
    assert await handle_rating_submitted(event, stage, publisher.publish) == "duplicate"
    assert len(publisher.of_type(FaceRated)) == 1


async def test_face_items_consumer_counts_each_rater_once(tmp_path: Path, model: PersonalModel,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=41)
    await store_personalization(blobs, photo_id, [(0, model.item_map.mean.astype(np.float32))])  # an average face
    publisher = RecordingPublisher()
    raters = [new_id() for _ in range(30)]
    for rater in raters:
        await handle_rating_submitted(rating(rater, photo_id, 1), stage, publisher.publish)
    events = publisher.of_type(FaceRated)
    assert [await handle_face_rated(e, stage) for e in events] == ["added"] * len(raters)  # type: ignore[arg-type]
    assert await handle_face_rated(events[0], stage) == "duplicate"  # type: ignore[arg-type]
    item = await stage.items.load(photo_id, 0)
    assert item is not None and sorted(item.raters) == sorted(raters)

    # thirty "hot" votes lift the face for a viewer who has rated nothing special (their prior is the population)
    viewer = model.new_state(new_id(), {"sex": "female", "age": 30, "preference": "men"})
    vector = await stage.features.load(photo_id, 0)
    assert vector is not None
    cold = model.personal_score(viewer, vector, 5.0)
    warm = model.personal_score(viewer, vector, 5.0, item)
    assert warm.score > cold.score + 0.3

    other = events[0].model_copy(update={"model_version": "older-model"})
    assert await handle_face_rated(other, stage) == "other_model"  # type: ignore[arg-type]
    item.model_version = "older-model"  # a deploy changed the model: the stored face is replayed, not dropped
    await stage.items.save(photo_id, 0, item)
    late = events[0].model_copy(update={"visitor_id": new_id()})
    assert await handle_face_rated(late, stage) == "added"  # type: ignore[arg-type]
    replayed = await stage.items.load(photo_id, 0)
    assert replayed is not None and replayed.model_version == model.version and replayed.n_ratings == len(raters) + 1
    monkeypatch.setattr(ratings_consumer, "MAX_FACE_RATINGS", len(raters) + 1)
    assert await handle_face_rated(events[0].model_copy(update={"visitor_id": new_id()}), stage) == "saturated"  # type: ignore[arg-type]
    gone = events[0].model_copy(update={"photo_id": new_id(), "visitor_id": new_id()})
    assert await handle_face_rated(gone, stage) == "no_features"  # type: ignore[arg-type]
    assert await stage.items.load(gone.photo_id, 0) is None  # nothing left behind a deleted photo
    _, prefixes = keys.derived_keys_and_prefixes(photo_id)
    assert any(keys.face_item(photo_id, 0).startswith(p) for p in prefixes)  # deleted with the photo


async def test_personal_api_reports_the_visitors_score_from_the_threshold(aiohttp_client, tmp_path: Path) -> None:
    """face_ratings counts every rater of the face; crowd_score appears once crowd_min_ratings of them have rated."""
    model = load_personal_model(Settings(scoring=ScoringSettings(min_ratings=3, crowd_min_ratings=4)))
    blobs = LocalBlobStore(tmp_path)
    stage = PersonalizeStage.from_blobs(model, blobs)
    app = web.Application()
    install_personal_api(app, stage)
    client = await aiohttp_client(app)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=42)
    await store_personalization(blobs, photo_id, [(0, model.item_map.mean.astype(np.float32))])  # an average face
    publisher = RecordingPublisher()
    viewer = new_id()

    async def face() -> dict:
        resp = await client.get("/api/v1/personal", params={"viewer": viewer, "photo_id": photo_id})
        assert resp.status == 200
        return (await resp.json())["faces"][0]

    scores = []
    for n in range(1, 7):
        await handle_rating_submitted(rating(new_id(), photo_id, 1), stage, publisher.publish)
        assert await handle_face_rated(publisher.of_type(FaceRated)[-1], stage) == "added"  # type: ignore[arg-type]
        answer = await face()
        assert answer["face_ratings"] == n and answer["source"] == "global"
        assert ("crowd_score" in answer) == (n >= 4)
        scores.append(answer.get("crowd_score"))
    assert 1.0 <= scores[3] < scores[4] < scores[5] <= 10.0  # every "hot" vote lifts it


def test_face_rated_rejects_malformed_weights() -> None:
    base = {"visitor_id": new_id(), "photo_id": new_id(), "face_index": 0, "rating": 4.0, "model_version": "m"}
    with pytest.raises(ValueError):
        FaceRated(**base, rater_weights=[1.0])  # a rater vector has at least one factor and the bias
    with pytest.raises(ValueError):
        FaceRated(**base, rater_weights=[0.0] * 66)


def test_queue_alternates_informative_and_least_rated_faces(model: PersonalModel) -> None:
    rng = np.random.default_rng(5)
    features = model.item_map.mean + rng.normal(size=(6, model.item_map.mean.shape[0])) / model.item_map.scale
    counts = [0, 5, 19, 25, 30, 40]  # below WARM_TARGET (20): the first three
    items = []
    for face, count in enumerate(counts):
        item = model.new_item_state(f"p/{face}")
        for i in range(count):
            item = model.add_item_rating(item, model.prior.population_mean, model.mu, f"r{i}")
        items.append(item)
    rater = model.new_state(new_id())
    one = model.next_faces(rater, features, 1, items)
    assert one == [0]  # a single slot goes to the least-rated face
    four = model.next_faces(rater, features, 4, items)
    assert len(set(four)) == 4 and {0, 1} <= set(four)  # half the slots warm up the two least-rated faces
    assert four[1] == 0 and four[3] == 1  # alternating: informative, warm-up, informative, warm-up
    assert sorted(model.next_faces(rater, features, 10, items)) == list(range(6))  # fewer candidates than asked
    all_warm = [items[5]] * 6
    assert len(model.next_faces(rater, features, 3, all_warm)) == 3  # nobody cold: all informative


async def test_queue_cache_reads_each_state_once_per_ttl(tmp_path: Path, model: PersonalModel) -> None:
    store = BlobItemStateStore(LocalBlobStore(tmp_path))
    photo_id = new_id()
    fresh = CachedItemStates(store, ttl_s=3600.0)
    assert await fresh.load(photo_id, 0) is None  # never rated (and that answer is cached too)
    await store.save(photo_id, 0, model.add_item_rating(model.new_item_state("f"), model.prior.population_mean,
                                                         model.mu, "r1"))
    assert await fresh.load(photo_id, 0) is None  # within the TTL: the cached answer
    expired = CachedItemStates(store, ttl_s=0.0, max_size=1)
    state = await expired.load(photo_id, 0)
    assert state is not None and state.raters == ["r1"]
    await expired.load(new_id(), 0)
    assert len(expired._cache) == 1  # bounded


async def test_an_unreadable_face_state_reads_as_never_rated(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    photo_id = new_id()
    await blobs.put(keys.face_item(photo_id, 0), b"{not json", "application/json")
    assert await BlobItemStateStore(blobs).load(photo_id, 0) is None
