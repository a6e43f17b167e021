"""The rating endpoints of the upload service through its real app factory (LocalBlobStore, RecordingPublisher),
with the scoring service's personal API served for real on loopback, or absent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from aiohttp import web

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta, RateAlias, ResultDocument
from libs.common.events import RatingSubmitted
from libs.common.ids import new_id
from libs.common.netutil import free_port
from libs.common.settings import ScoringSettings, Settings
from services.scoring.features_store import store_personalization
from services.scoring.personal_api import install_personal_api
from services.scoring.ratings_consumer import PersonalizeStage, handle_rating_submitted, load_personal_model
from services.upload.app import create_app
from services.upload.routes_ratings import merge_personal
from services.upload.web.visitor import VISITOR_COOKIE

CHIP = b"\x89PNG\r\n\x1a\nfake-chip"


async def photo(blobs: LocalBlobStore, *, owner: str, rateable: bool = True, faces: list[dict] | None = None,
                vectors: list[np.ndarray | None] | None = None) -> str:
    photo_id = new_id()
    meta = PhotoMeta(photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="x" * 64,
                     visitor_id=owner, rateable=rateable, rate_id=new_id() if rateable else None, width=512,
                     height=512)
    await blobs.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")
    if meta.rate_id:  # what the upload service writes beside the meta of a rateable photo
        alias = RateAlias(rate_id=meta.rate_id, photo_id=photo_id)
        await blobs.put(keys.rate_alias(meta.rate_id), alias.model_dump_json().encode(), "application/json")
    faces = faces if faces is not None else [{"index": 0, "attractiveness": 6.0}]
    for face in faces:
        await blobs.put(keys.chip(photo_id, face["index"]), CHIP, "image/png")
    if vectors is not None:
        await store_personalization(blobs, photo_id, list(enumerate(vectors)))
    doc = ResultDocument(photo_id=photo_id, status="done", faces=faces, scored_at=datetime.now(UTC))
    await blobs.put(keys.result(photo_id), doc.model_dump_json().encode(), "application/json")
    return photo_id


async def rate_id_of(blobs: LocalBlobStore, photo_id: str) -> str:
    """The alias raters know the photo by."""
    rate_id = PhotoMeta.model_validate_json((await blobs.get(keys.meta(photo_id))).data).rate_id
    assert rate_id is not None
    return rate_id


def upload_app(blobs: LocalBlobStore, publisher: RecordingPublisher, scoring_url: str) -> web.Application:
    return create_app(Settings(scoring=ScoringSettings(internal_url=scoring_url)), blob_store=blobs,
                      publisher=publisher)


async def test_post_rating_publishes_and_refuses(aiohttp_client, tmp_path: Path) -> None:
    blobs, publisher = LocalBlobStore(tmp_path), RecordingPublisher()
    client = await aiohttp_client(upload_app(blobs, publisher, f"http://127.0.0.1:{free_port()}"))
    me, other = new_id(), new_id()
    theirs = await photo(blobs, owner=other)
    mine = await photo(blobs, owner=me)
    private = await photo(blobs, owner=other, rateable=False)
    minor = await photo(blobs, owner=other, faces=[{"index": 0, "withheld_reason": "minor"}])
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: me})

    def rate(photo_id: str, **extra: object):
        return client.post("/api/v1/ratings", json={"photo_id": photo_id, "face_index": 0, "scale": "hot_or_not",
                                                    "rating": 1, **extra})

    resp = await rate(theirs)
    assert resp.status == 202, await resp.text()
    (event,) = publisher.of_type(RatingSubmitted)
    assert (event.visitor_id, event.photo_id, event.face_index, event.rating) == (me, theirs, 0, 1.0)
    assert event.partition_key == me

    cases = [
        (rate(theirs, rating=3), 400, "invalid_rating"),
        (rate(theirs, scale="stars"), 400, "invalid_scale"),
        (rate(theirs, face_index=-1), 400, "invalid_face_index"),
        (client.post("/api/v1/ratings", data=b"{nope"), 400, "invalid_json"),
        (rate(new_id()), 404, "not_found"),
        (rate(theirs, face_index=3), 404, "face_not_found"),
        (rate(private), 403, "not_rateable"),
        (rate(mine), 403, "own_photo"),
        (rate(minor), 403, "face_withheld"),
    ]
    for request, status, code in cases:
        resp = await request
        assert (resp.status, (await resp.json())["error"]["code"]) == (status, code)
    client.session.cookie_jar.clear()
    resp = await rate(theirs)
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "missing_visitor")
    assert len(publisher.of_type(RatingSubmitted)) == 1


async def test_ratings_carry_the_rated_and_the_raters_gender(aiohttp_client, tmp_path: Path) -> None:
    blobs, publisher = LocalBlobStore(tmp_path), RecordingPublisher()
    client = await aiohttp_client(upload_app(blobs, publisher, f"http://127.0.0.1:{free_port()}"))
    me, other = new_id(), new_id()
    theirs = await photo(blobs, owner=other, faces=[{"index": 0, "attractiveness": 6.0, "gender": "female"}])
    mine = await photo(blobs, owner=me, faces=[{"index": 0, "attractiveness": 5.0, "gender": "male"}])
    faceless = await photo(blobs, owner=me, faces=[])
    deleted = await photo(blobs, owner=me, faces=[{"index": 0, "attractiveness": 5.0, "gender": "female"}])
    await blobs.put(keys.tombstone(deleted), b"{}", "application/json")
    damaged = new_id()
    await blobs.put(keys.meta(damaged), b"{not json", "application/json")
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: me})

    async def genders(**extra: object) -> tuple[str | None, str | None]:
        resp = await client.post("/api/v1/ratings", json={"photo_id": theirs, "face_index": 0, "rating": 1, **extra})
        assert resp.status == 202, await resp.text()
        event = publisher.of_type(RatingSubmitted)[-1]
        assert str(event.event_id) == (await resp.json())["event_id"]
        return event.rated_gender, event.rater_gender

    assert await genders(rater_photo_id=mine) == ("female", "male")
    assert await genders() == ("female", None)  # no photo named: the rater's gender is unknown
    assert await genders(rater_photo_id=None) == ("female", None)
    # a side field never costs the rating: unknown, deleted, faceless photos leave the rater's gender unknown
    for photo_id in (new_id(), deleted, faceless, damaged):
        assert await genders(rater_photo_id=photo_id) == ("female", None)
    published = len(publisher.of_type(RatingSubmitted))

    async def refused(**extra: object) -> tuple[int, str]:
        resp = await client.post("/api/v1/ratings", json={"photo_id": theirs, "face_index": 0, "rating": 1, **extra})
        return resp.status, (await resp.json())["error"]["code"]

    assert await refused(rater_photo_id="not/an/id") == (400, "invalid_rater_photo_id")
    assert await refused(rater_photo_id=theirs) == (403, "not_your_photo")
    assert len(publisher.of_type(RatingSubmitted)) == published


async def test_scoring_away_means_no_faces_and_no_personal_score(aiohttp_client, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    client = await aiohttp_client(upload_app(blobs, RecordingPublisher(), f"http://127.0.0.1:{free_port()}"))
    photo_id = await photo(blobs, owner=new_id())
    resp = await client.get("/api/v1/rate/next", params={"count": "3"})
    assert resp.status == 200 and await resp.json() == {"faces": []}
    resp = await client.get(f"/api/v1/photos/{photo_id}", params={"viewer": new_id()})
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "done" and "personal_score" not in body["faces"][0]
    assert (await client.get("/api/v1/rate/next", params={"count": "99"})).status == 400


async def test_rate_loop_through_the_scoring_api(aiohttp_client, aiohttp_server, tmp_path: Path) -> None:
    """Faces to rate come from scoring, their images from upload, and the personal score appears after k ratings."""
    blobs = LocalBlobStore(tmp_path)
    model = load_personal_model(Settings(scoring=ScoringSettings(min_ratings=2)))
    stage = PersonalizeStage.from_blobs(model, blobs)
    scoring = web.Application()
    install_personal_api(scoring, stage)
    server = await aiohttp_server(scoring)
    publisher = RecordingPublisher()
    client = await aiohttp_client(upload_app(blobs, publisher, str(server.make_url(""))))
    rng = np.random.default_rng(0)
    me, other = new_id(), new_id()

    def vec() -> np.ndarray:
        return model.item_map.mean + rng.normal(size=model.item_map.mean.shape) * model.item_map.scale

    mine = await photo(blobs, owner=me, vectors=[vec()])
    theirs = [await photo(blobs, owner=other, vectors=[vec()]) for _ in range(3)]
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: me})

    faces = (await (await client.get("/api/v1/rate/next", params={"count": "5"})).json())["faces"]
    assert sorted(f["rate_id"] for f in faces) == sorted([await rate_id_of(blobs, p) for p in theirs])
    assert not any(p in json.dumps(faces) for p in [mine, *theirs])  # a photo id would open the owner's result
    image = await client.get(faces[0]["image_url"])
    assert image.status == 200 and await image.read() == CHIP
    assert (await client.get(f"/api/v1/rate/faces/{await rate_id_of(blobs, mine)}/7")).status == 404
    assert (await client.get(f"/api/v1/rate/faces/{theirs[0]}/0")).status == 404  # photo ids are not rate ids

    status = await (await client.get(f"/api/v1/photos/{mine}")).json()
    assert status["faces"][0]["personal_source"] == "global" and "personal_score" not in status["faces"][0]
    for face in faces[: model.min_ratings]:
        resp = await client.post("/api/v1/ratings", json={**{k: face[k] for k in ("rate_id", "face_index")},
                                                          "scale": "hot_or_not", "rating": 1})
        assert resp.status == 202
    for event in publisher.of_type(RatingSubmitted):  # what the personalize consumer does with them
        assert await handle_rating_submitted(event, stage) == "added"
    status = await (await client.get(f"/api/v1/photos/{mine}")).json()
    face = status["faces"][0]
    assert face["personal_source"] == "personal" and face["personal_ratings"] == model.min_ratings
    assert 1.0 <= face["personal_score"] <= 10.0 and status["personal_min_ratings"] == model.min_ratings


def test_merge_personal_adds_the_visitors_verdict_but_never_to_withheld_faces() -> None:
    body = {"status": "done", "faces": [{"index": 0, "attractiveness": 6.1},
                                        {"index": 1, "attractiveness": None, "withheld_reason": "possible_minor"},
                                        {"index": 2, "attractiveness": 5.0}]}
    personal = {"min_ratings": 5, "faces": [
        {"index": 0, "personal_score": 6.1, "source": "global", "n_ratings": 2, "face_ratings": 7, "crowd_score": 7.4},
        {"index": 1, "personal_score": 9.0, "source": "personal", "n_ratings": 9, "face_ratings": 9,
         "crowd_score": 8.0},
        {"index": 2, "personal_score": 5.0, "source": "global", "n_ratings": 2, "face_ratings": 3},
    ]}
    faces = merge_personal(body, personal)["faces"]
    assert faces[0]["crowd_ratings"] == 7 and faces[0]["crowd_score"] == 7.4 and "personal_score" not in faces[0]
    assert faces[1] == {"index": 1, "attractiveness": None, "withheld_reason": "possible_minor"}
    assert faces[2]["crowd_ratings"] == 3 and "crowd_score" not in faces[2]


def test_merge_personal_ignores_a_malformed_answer() -> None:
    def body() -> dict:
        return {"status": "done", "faces": [{"index": 0, "attractiveness": 6.1}]}

    for personal in ({"faces": 5}, {"faces": None}, {"faces": "abc"}, {"faces": [1, "x", None]},
                     {"faces": [{"index": [0], "personal_score": 9.0, "source": "personal"}]},  # unhashable index
                     {"faces": [{"index": True, "personal_score": 9.0, "source": "personal"}]},
                     {"faces": [{"index": 0, "personal_score": "9", "source": "personal"}]}):
        merged = merge_personal(body(), personal)
        assert "personal_score" not in merged["faces"][0], personal


async def test_rating_bodies_are_read_whole_and_deep_nesting_is_invalid_json(aiohttp_client, tmp_path: Path) -> None:
    blobs, publisher = LocalBlobStore(tmp_path), RecordingPublisher()
    client = await aiohttp_client(upload_app(blobs, publisher, f"http://127.0.0.1:{free_port()}"))
    theirs = await photo(blobs, owner=new_id())
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: new_id()})
    rating = json.dumps({"photo_id": theirs, "face_index": 0, "rating": 1}).encode()

    async def in_pieces(*pieces: bytes) -> AsyncIterator[bytes]:  # chunked, and not all there at the first read
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.02)

    resp = await client.post("/api/v1/ratings", data=in_pieces(rating[:10], rating[10:]))
    assert resp.status == 202, await resp.text()
    for data in (b"[" * 1000, in_pieces(b"[" * 1000, b"]" * 1000), in_pieces(b"{", b" " * 5000, b"}")):
        resp = await client.post("/api/v1/ratings", data=data)
        assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_json")
    assert len(publisher.of_type(RatingSubmitted)) == 1


@pytest.mark.parametrize("number", ["²", "٣", "9" * 5000, "1" * 5, "-1", " 3", "3\n", "0x3"])
async def test_counts_and_face_indexes_are_ascii_digits(aiohttp_client, tmp_path: Path, number: str) -> None:
    """str.isdigit() takes '²' (int() refuses it) and '٣' (int() reads 3), int() refuses 5000 digits: never a 500."""
    blobs = LocalBlobStore(tmp_path)
    client = await aiohttp_client(upload_app(blobs, RecordingPublisher(), f"http://127.0.0.1:{free_port()}"))
    rate_id = await rate_id_of(blobs, await photo(blobs, owner=new_id()))
    resp = await client.get("/api/v1/rate/next", params={"count": number})
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_count")
    resp = await client.get(f"/api/v1/rate/faces/{rate_id}/{quote(number)}")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
    assert (await client.get(f"/api/v1/rate/faces/{rate_id}/0")).status == 200


MALFORMED_SCORING_ANSWERS = [{"faces": [1]}, {"faces": 5}, {"faces": None}, {"faces": ["x"]}, {"faces": {"a": 1}},
                             {"faces": [{"rate_id": "A" * 22, "face_index": [0]}, {"index": [0]}]}, [1, 2],
                             "[" * 100_000]  # a str is sent as is: nested past the recursion limit


@pytest.mark.parametrize("answer", MALFORMED_SCORING_ANSWERS, ids=range(len(MALFORMED_SCORING_ANSWERS)))
async def test_a_malformed_scoring_answer_is_no_answer(aiohttp_client, aiohttp_server, tmp_path: Path,
                                                       answer: object) -> None:
    """The scoring service's 200s are checked like its failures: never a 5xx, just nothing to rate or merge."""

    async def answer_it(request: web.Request) -> web.Response:
        if isinstance(answer, str):
            return web.Response(text=answer, content_type="application/json")
        return web.json_response(answer)

    scoring = web.Application()
    scoring.router.add_get("/api/v1/rate/next", answer_it)
    scoring.router.add_get("/api/v1/personal", answer_it)
    server = await aiohttp_server(scoring)
    blobs = LocalBlobStore(tmp_path)
    client = await aiohttp_client(upload_app(blobs, RecordingPublisher(), str(server.make_url(""))))
    photo_id = await photo(blobs, owner=new_id())
    resp = await client.get("/api/v1/rate/next")
    assert resp.status == 200 and await resp.json() == {"faces": []}
    resp = await client.get(f"/api/v1/photos/{photo_id}", params={"viewer": new_id()})
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "done" and "personal_score" not in body["faces"][0]


async def test_good_faces_survive_bad_neighbours_in_the_scoring_answer(aiohttp_client, aiohttp_server,
                                                                       tmp_path: Path) -> None:
    good = new_id()
    faces = [1, None, {"rate_id": good, "face_index": 0}, {"rate_id": good, "face_index": True},
             {"rate_id": good, "face_index": 10**6}, {"rate_id": ["x"], "face_index": 0},
             {"photo_id": good, "face_index": 0}]  # no rate id: never shown (the photo id stays private)

    async def rate_next(request: web.Request) -> web.Response:
        return web.json_response({"faces": faces})

    scoring = web.Application()
    scoring.router.add_get("/api/v1/rate/next", rate_next)
    server = await aiohttp_server(scoring)
    client = await aiohttp_client(upload_app(LocalBlobStore(tmp_path), RecordingPublisher(), str(server.make_url(""))))
    resp = await client.get("/api/v1/rate/next")
    assert resp.status == 200
    assert (await resp.json())["faces"] == [{"rate_id": good, "face_index": 0,
                                             "image_url": f"/api/v1/rate/faces/{good}/0"}]
