"""POST /api/v1/photos/{id}/share and GET /api/v1/photos/{id}/image through the real app factory: ownership,
idempotency, the public share record, photo.shared, and the image's 200/404/410 answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta, ResultDocument, ShareRecord
from libs.common.events import PhotoShared, utcnow
from libs.common.settings import CoreSettings, Settings
from services.upload import handlers
from services.upload.app import create_app
from services.upload.web.visitor import VISITOR_COOKIE

BASE_URL = "https://howhot.test"
VISITOR = "VisitorVisitorVisitor1"
FACE = {
    "index": 0, "box": [100, 80, 300, 320], "age": 31.0, "age_low": 27.0, "age_high": 36.0, "p_female": 0.9,
    "gender": "female", "attractiveness": 7.2, "attractiveness_word": "Hot", "withheld_reason": None,
}



@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Emit INFO records, so a bad ``extra`` key (e.g. one LogRecord reserves) fails here, not in production."""
    caplog.set_level(logging.INFO)

@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore, publisher: RecordingPublisher):
    settings = Settings(core=CoreSettings(public_base_url=BASE_URL))
    return await aiohttp_client(create_app(settings, blob_store=store, publisher=publisher))


async def upload(client, photo: bytes, **fields: str) -> dict:
    form = FormData()
    form.add_field("photo", photo, filename="me.jpg", content_type="image/jpeg")
    for name, value in fields.items():
        form.add_field(name, value)
    response = await client.post("/api/v1/photos", data=form)
    assert response.status == 202, await response.text()
    return await response.json()


async def finish(store: LocalBlobStore, photo_id: str) -> None:
    """What the scoring stage leaves behind: a done result document."""
    doc = ResultDocument(photo_id=photo_id, status="done", faces=[FACE], scored_at=utcnow())
    await store.put(keys.result(photo_id), doc.model_dump_json().encode(), "application/json")


async def share(client, photo_id: str, token: str | None, body: object = None, **headers: str):
    if token is not None:
        headers["X-Delete-Token"] = token
    return await client.post(f"/api/v1/photos/{photo_id}/share", json=body, headers=headers)


async def meta_of(store: LocalBlobStore, photo_id: str) -> PhotoMeta:
    return PhotoMeta.model_validate_json((await store.get(keys.meta(photo_id))).data)


async def test_share_id_is_allocated_at_upload_but_not_public(client, store, astronaut_jpeg: bytes) -> None:
    accepted = await upload(client, astronaut_jpeg)
    meta = await meta_of(store, accepted["photo_id"])
    assert meta.share_id and meta.share_id != accepted["photo_id"]
    assert not await store.list("shares/")


async def test_share_makes_it_public_once_and_publishes(client, store, publisher, astronaut_jpeg: bytes) -> None:
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: VISITOR})
    accepted = await upload(client, astronaut_jpeg)
    photo_id, token = accepted["photo_id"], accepted["delete_token"]
    share_id = (await meta_of(store, photo_id)).share_id
    await finish(store, photo_id)

    first = await share(client, photo_id, token, {"channel": "x"})
    assert first.status == 201, await first.text()
    body = await first.json()
    assert body["share_id"] == share_id
    assert body["share_url"] == f"{BASE_URL}/s/{share_id}"
    assert body["card_urls"] == {fmt: f"{BASE_URL}/cards/{share_id}/{fmt}.png" for fmt in ("og", "square", "story")}
    assert body["cards_ready"] is False
    assert first.headers["Cache-Control"] == "no-store"
    record = ShareRecord.model_validate_json((await store.get(keys.share(share_id))).data)
    assert (record.share_id, record.photo_id) == (share_id, photo_id)

    await store.put(keys.card(photo_id, "og", handlers.CARD_TEMPLATE_VERSION), b"\x89PNG", "image/png")
    again = await share(client, photo_id, token)
    assert again.status == 200
    assert {**(await again.json()), "cards_ready": False} == body
    assert (await again.json())["cards_ready"] is True
    assert (await store.get(keys.share(share_id))).data == record.model_dump_json().encode()  # written once

    events = publisher.of_type(PhotoShared)
    assert [(e.photo_id, e.share_id, e.channel, e.visitor_id) for e in events] == [
        (photo_id, share_id, "x", VISITOR), (photo_id, share_id, None, VISITOR)
    ]


async def test_share_refuses_wrong_or_missing_token(client, store, publisher, astronaut_jpeg: bytes) -> None:
    accepted = await upload(client, astronaut_jpeg)
    await finish(store, accepted["photo_id"])
    wrong = await share(client, accepted["photo_id"], "not-the-token")
    assert wrong.status == 403 and (await wrong.json())["error"]["code"] == "invalid_delete_token"
    missing = await share(client, accepted["photo_id"], None)
    assert missing.status == 403 and (await missing.json())["error"]["code"] == "missing_delete_token"
    assert not await store.list("shares/") and not publisher.of_type(PhotoShared)


async def test_share_waits_for_a_result(client, astronaut_jpeg: bytes) -> None:
    accepted = await upload(client, astronaut_jpeg)
    response = await share(client, accepted["photo_id"], accepted["delete_token"])
    assert response.status == 409 and (await response.json())["error"]["code"] == "not_ready"


@pytest.mark.parametrize(
    ("body", "code"),
    [(["x"], "invalid_json"), ({"channel": "myspace"}, "invalid_channel"), ("x" * 2000, "invalid_json")],
)
async def test_share_rejects_bad_bodies(client, store, astronaut_jpeg: bytes, body: object, code: str) -> None:
    accepted = await upload(client, astronaut_jpeg)
    await finish(store, accepted["photo_id"])
    response = await share(client, accepted["photo_id"], accepted["delete_token"], body)
    assert response.status == 400 and (await response.json())["error"]["code"] == code


async def test_share_unknown_and_deleted(client, store, astronaut_jpeg: bytes) -> None:
    unknown = await share(client, "AAAAAAAAAAAAAAAAAAAAAA", "t")
    assert unknown.status == 404
    accepted = await upload(client, astronaut_jpeg)
    photo_id, token = accepted["photo_id"], accepted["delete_token"]
    await finish(store, photo_id)
    assert (await share(client, photo_id, token)).status == 201
    share_id = (await meta_of(store, photo_id)).share_id
    assert (await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})).status == 200
    assert not await store.exists(keys.share(share_id))  # deleting the photo takes the share page down too
    gone = await share(client, photo_id, token)
    assert gone.status == 410 and (await gone.json())["error"]["code"] == "gone"


def test_card_template_version_matches_the_share_service() -> None:
    from services.share.cards import TEMPLATE_VERSION
    from services.share.layout import FORMATS

    assert handlers.CARD_TEMPLATE_VERSION == TEMPLATE_VERSION
    assert set(handlers.CARD_FORMATS) == set(FORMATS)


# -- GET /api/v1/photos/{id}/image ---------------------------------------------------------------------------------


async def test_image_is_served_privately(client, store, astronaut_jpeg: bytes) -> None:
    photo_id = (await upload(client, astronaut_jpeg))["photo_id"]
    response = await client.get(f"/api/v1/photos/{photo_id}/image")
    assert response.status == 200
    assert response.content_type == "image/jpeg"
    assert response.headers["Cache-Control"].startswith("private")
    assert await response.read() == (await store.get(keys.photo(photo_id))).data


async def test_image_unknown_malformed_deleted_and_not_kept(client, store, astronaut_jpeg: bytes) -> None:
    assert (await client.get("/api/v1/photos/AAAAAAAAAAAAAAAAAAAAAA/image")).status == 404
    assert (await client.get("/api/v1/photos/bad/image")).status == 404

    accepted = await upload(client, astronaut_jpeg)
    await client.delete(f"/api/v1/photos/{accepted['photo_id']}", headers={"X-Delete-Token": accepted["delete_token"]})
    deleted = await client.get(f"/api/v1/photos/{accepted['photo_id']}/image")
    assert deleted.status == 410 and (await deleted.json())["error"]["code"] == "gone"

    ephemeral = (await upload(client, astronaut_jpeg, store="false"))["photo_id"]
    await store.delete(keys.photo(ephemeral))  # what the pipeline does after scoring for store=false
    not_kept = await client.get(f"/api/v1/photos/{ephemeral}/image")
    assert not_kept.status == 410 and (await not_kept.json())["error"]["code"] == "not_kept"


async def test_share_body_is_read_whole_and_deep_nesting_is_invalid_json(
    client, store, publisher, astronaut_jpeg: bytes
) -> None:
    accepted = await upload(client, astronaut_jpeg)
    photo_id, token = accepted["photo_id"], accepted["delete_token"]
    await finish(store, photo_id)
    url, headers = f"/api/v1/photos/{photo_id}/share", {"X-Delete-Token": token}

    async def in_pieces(*pieces: bytes) -> AsyncIterator[bytes]:  # chunked, and not all there at the first read
        for piece in pieces:
            yield piece
            await asyncio.sleep(0.02)

    response = await client.post(url, data=in_pieces(b'{"chan', b'nel": "x"}'), headers=headers)
    assert response.status == 201, await response.text()
    assert [e.channel for e in publisher.of_type(PhotoShared)] == ["x"]
    for data in (b"[" * 1000, in_pieces(b"[" * 600, b"[" * 400), in_pieces(b"{", b" " * 5000, b"}")):
        response = await client.post(url, data=data, headers=headers)
        assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_json"
