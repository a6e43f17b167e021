"""Requests no browser sends, through the real upload app (aiohttp_client, LocalBlobStore(tmp), RecordingPublisher):
header bytes that are not UTF-8, bodies that fail their Content-Encoding, a Referer that is not a URL, and a share
racing a delete. Each once answered 500 or left a blob behind; the promise is a 4xx (or the page) and nothing kept.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.events import PhotoDeleted, PhotoShared, utcnow
from libs.common.settings import CoreSettings, Settings, UploadSettings
from services.upload.app import create_app
from tests.multipart import BOUNDARY, RAW_HEADERS, part, raw_body

UNKNOWN_ID = "A" * 22  # well-formed, never issued
VISITOR = "V" * 22
NOT_UTF8_TOKEN = b"\xff\xfe"  # aiohttp keeps these header bytes as lone surrogates, which cannot be hashed


class InterleavingStore(LocalBlobStore):
    """A real local store that runs ``before_share_write`` once, just before a share record is written: the moment a
    concurrent request can slip in between the share handler's ownership check and its write."""

    before_share_write: Callable[[], Awaitable[None]] | None = None

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        hook, self.before_share_write = self.before_share_write, None
        if hook is not None and key.startswith("shares/"):
            await hook()
        await super().put(key, data, content_type)


@pytest.fixture
def store(tmp_path: Path) -> InterleavingStore:
    return InterleavingStore(tmp_path / "blobs")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client, store: InterleavingStore, publisher: RecordingPublisher) -> TestClient:
    settings = Settings(core=CoreSettings(public_base_url="https://howhot.test"),
                        upload=UploadSettings(rate_limit_burst=0))
    return await aiohttp_client(create_app(settings, blob_store=store, publisher=publisher))


def stored_files(store: LocalBlobStore) -> list[str]:
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())


async def upload(client: TestClient, jpeg: bytes) -> dict[str, str]:
    form = FormData()
    form.add_field("photo", jpeg, filename="me.jpg", content_type="image/jpeg")
    response = await client.post("/api/v1/photos", data=form)
    assert response.status == 202, await response.text()
    return await response.json()


async def raw_request(client: TestClient, head: bytes) -> tuple[int, bytes]:
    """Send a request head byte for byte (HTTP clients refuse non-UTF-8 header values); the status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(head + b"Host: howhot.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(("method", "suffix"), [(b"DELETE", b""), (b"POST", b"/share")], ids=["delete", "share"])
async def test_a_delete_token_that_is_not_utf8_is_refused_403(client, store, publisher, astronaut_jpeg: bytes,
                                                              method: bytes, suffix: bytes) -> None:
    photo_id = (await upload(client, astronaut_jpeg))["photo_id"]
    events_before = len(publisher.events)
    status, body = await raw_request(
        client, method + b" /api/v1/photos/" + photo_id.encode() + suffix + b" HTTP/1.1\r\n"
        + b"X-Delete-Token: " + NOT_UTF8_TOKEN + b"\r\n")
    assert status == 403, body
    assert b'"invalid_delete_token"' in body
    assert len(publisher.events) == events_before
    assert await store.exists(keys.photo(photo_id)) and await store.exists(keys.meta(photo_id))
    # an unknown photo is still 404 whatever the token: the token is only looked at once the photo is found
    status, body = await raw_request(
        client, method + b" /api/v1/photos/" + UNKNOWN_ID.encode() + suffix + b" HTTP/1.1\r\n"
        + b"X-Delete-Token: " + NOT_UTF8_TOKEN + b"\r\n")
    assert status == 404, body


NOT_GZIP = b"this is not gzip data at all"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/photos", f"multipart/form-data; boundary={BOUNDARY}"),
        ("/api/v1/ratings", "application/json"),
        (f"/api/v1/photos/{UNKNOWN_ID}/share", "application/json"),
    ],
    ids=["upload", "rating", "share"],
)
async def test_a_body_that_fails_its_content_encoding_is_400(client, store, publisher, path: str,
                                                             content_type: str, encoding: str) -> None:
    """aiohttp decodes Content-Encoding while the handler reads, and raises RequestPayloadError on bad bytes."""
    response = await client.post(
        path, data=NOT_GZIP, cookies={"hh_vid": VISITOR},
        headers={"Content-Type": content_type, "Content-Encoding": encoding, "X-Delete-Token": "t"},
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["code"] == "invalid_body"
    assert stored_files(store) == []
    assert publisher.events == []


async def test_a_well_encoded_body_is_still_read(client, astronaut_jpeg: bytes) -> None:
    """The mirror image: a gzip-encoded upload that decodes is accepted as before."""
    body = raw_body(part("photo", astronaut_jpeg, filename=b"me.jpg", content_type="image/jpeg"))
    response = await client.post("/api/v1/photos", data=gzip.compress(body),
                                 headers={**RAW_HEADERS, "Content-Encoding": "gzip"})
    assert response.status == 202, await response.text()


@pytest.mark.parametrize("referer", ["http://[abc/", "//[::1"], ids=["bracket", "ipv6-unclosed"])
@pytest.mark.parametrize("path", ["/", "/rate", f"/p/{UNKNOWN_ID}"])
async def test_a_referer_that_is_not_a_url_still_serves_the_page(client, path: str, referer: str) -> None:
    response = await client.get(path, headers={"Referer": referer})
    assert response.status == 200, await response.text()
    assert response.content_type == "text/html"


async def test_a_share_racing_a_delete_leaves_no_share_record(client, store, publisher,
                                                              astronaut_jpeg: bytes) -> None:
    """The owner presses share and delete at once; the delete finishes between the share's ownership check and its
    record write. The delete must win: no public share record outlives the photo, and no photo.shared follows."""
    accepted = await upload(client, astronaut_jpeg)
    photo_id, token = accepted["photo_id"], accepted["delete_token"]
    result = ResultDocument(photo_id=photo_id, status="done", faces=[], scored_at=utcnow())
    await store.put(keys.result(photo_id), result.model_dump_json().encode(), "application/json")
    share_id = PhotoMeta.model_validate_json((await store.get(keys.meta(photo_id))).data).share_id
    assert share_id
    deletes: list[int] = []

    async def delete_now() -> None:
        response = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": token})
        deletes.append(response.status)

    store.before_share_write = delete_now
    response = await client.post(f"/api/v1/photos/{photo_id}/share", headers={"X-Delete-Token": token})
    assert deletes == [200]
    assert response.status == 410, await response.text()
    assert (await response.json())["error"]["code"] == "gone"
    assert not await store.exists(keys.share(share_id))
    assert stored_files(store) == [keys.tombstone(photo_id)]
    assert any(isinstance(e, PhotoDeleted) for e in publisher.events)
    assert not any(isinstance(e, PhotoShared) for e in publisher.events)
