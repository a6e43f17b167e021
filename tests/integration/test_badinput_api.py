"""Hostile and broken uploads through the real upload app (aiohttp_client, LocalBlobStore(tmp), RecordingPublisher).

For every case the promise is the same: a 4xx with the JSON error shape and a reason code, never a 5xx, and nothing
left behind: no blob written, no event published. The ownership cases check the mirror image: the photo survives.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData
from PIL import Image

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.settings import CoreSettings, Settings, UploadSettings
from services.upload.app import create_app
from tests.multipart import BOUNDARY, RAW_HEADERS, part, raw_body

pytestmark = pytest.mark.integration

MAX_BYTES = 2 * 1024 * 1024  # small limit keeps the huge-body cases fast; real photos below are far smaller
HUGE_BODY_BYTES = 200 * 1024 * 1024  # what a hostile client claims or streams
STREAM_CHUNK = 256 * 1024
UNKNOWN_ID = "A" * 22  # well-formed, never issued


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore, publisher: RecordingPublisher):
    settings = Settings(core=CoreSettings(public_base_url="https://howhot.test"),
                        upload=UploadSettings(max_bytes=MAX_BYTES, rate_limit_burst=0))
    return await aiohttp_client(create_app(settings, blob_store=store, publisher=publisher))


def stored_files(store: LocalBlobStore) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else []


async def refused(response, status: int | None = None) -> dict:
    """Assert a 4xx JSON error (exact status when given) and return its body."""
    text = await response.text()
    assert 400 <= response.status < 500, (response.status, text)
    if status is not None:
        assert response.status == status, text
    assert response.content_type == "application/json", text
    body = await response.json()
    assert body["error"]["code"] and body["error"]["message"], body
    return body


def assert_nothing_kept(store: LocalBlobStore, publisher: RecordingPublisher) -> None:
    assert stored_files(store) == []
    assert publisher.events == []


def photo_form(data: bytes, filename: str = "me.jpg", content_type: str = "image/jpeg") -> FormData:
    form = FormData()
    form.add_field("photo", data, filename=filename, content_type=content_type)
    return form


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def gif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, format="GIF")
    return buf.getvalue()


HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


async def test_zero_bytes(client, store, publisher) -> None:
    await refused(await client.post("/api/v1/photos", data=photo_form(b"")))
    assert_nothing_kept(store, publisher)


async def test_truncated_jpeg(client, store, publisher, astronaut_jpeg: bytes) -> None:
    await refused(await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg[: len(astronaut_jpeg) // 3])))
    assert_nothing_kept(store, publisher)


async def test_png_declaring_100000_square_is_refused_before_decoding(client, store, publisher) -> None:
    body = await refused(await client.post("/api/v1/photos", data=photo_form(png_header_only(100_000, 100_000),
                                                                              "bomb.png", "image/png")))
    assert "pixel" in body["error"]["code"] or "large" in body["error"]["code"], body
    assert_nothing_kept(store, publisher)


async def test_gif_is_not_accepted(client, store, publisher) -> None:
    await refused(await client.post("/api/v1/photos", data=photo_form(gif_bytes(), "anim.gif", "image/gif")))
    assert_nothing_kept(store, publisher)


@pytest.mark.parametrize("payload", [HTML, SVG, PDF], ids=["html", "svg", "pdf"])
async def test_non_images_renamed_jpg(client, store, publisher, payload: bytes) -> None:
    await refused(await client.post("/api/v1/photos", data=photo_form(payload, "innocent.jpg", "image/jpeg")))
    assert_nothing_kept(store, publisher)


async def test_200mb_declared_length_is_refused_413(client, store, publisher) -> None:
    """A Content-Length over the limit is refused from the headers alone, before any body is read."""
    headers = {**RAW_HEADERS, "Content-Length": str(HUGE_BODY_BYTES)}
    body = raw_body(part("photo", b"\xff\xd8\xff", filename=b"a.jpg"))
    try:
        response = await client.post("/api/v1/photos", data=body, headers=headers)
    except OSError:
        pytest.fail("the server should answer 413 before dropping the connection")
    await refused(response, 413)
    assert_nothing_kept(store, publisher)


async def test_200mb_streamed_body_is_refused_413_without_reading_it_all(client, store, publisher) -> None:
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        head = b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
        yield head + b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
        chunk = b"\0" * STREAM_CHUNK
        while sent < HUGE_BODY_BYTES:
            sent += len(chunk)
            yield chunk
        yield b"\r\n--" + BOUNDARY.encode() + b"--\r\n"

    try:
        response = await client.post("/api/v1/photos", data=stream(), headers=RAW_HEADERS)
    except OSError:  # the server may close the socket after answering; then no status reaches the client
        pytest.fail("the server should answer 413 before dropping the connection")
    await refused(response, 413)
    assert sent < HUGE_BODY_BYTES, "the whole 200 MB was read: the limit did not trip early"
    assert_nothing_kept(store, publisher)


async def test_200mb_preamble_is_refused_413_without_reading_it_all(client, store, publisher,
                                                                   astronaut_jpeg: bytes) -> None:
    """The bytes before the first boundary count against the body limit too (aiohttp discards them uncapped)."""
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = (b"x" * 1000 + b"\r\n") * (STREAM_CHUNK // 1002)  # preamble lines, never a boundary
        while sent < HUGE_BODY_BYTES:
            sent += len(chunk)
            yield chunk
        yield raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg", content_type="image/jpeg"))

    try:
        response = await client.post("/api/v1/photos", data=stream(), headers=RAW_HEADERS)
    except OSError:
        pytest.fail("the server should answer 413 before dropping the connection")
    await refused(response, 413)
    assert sent < HUGE_BODY_BYTES, "the whole 200 MB was read: the preamble escaped the limit"
    assert_nothing_kept(store, publisher)


async def test_missing_photo_field(client, store, publisher) -> None:
    body = await refused(await client.post("/api/v1/photos", data=raw_body(part("rateable", b"true")),
                                           headers=RAW_HEADERS), 400)
    assert body["error"]["code"] == "missing_photo"
    form = FormData()
    form.add_field("rateable", "true")  # no file: aiohttp sends it url-encoded, which is not our form at all
    await refused(await client.post("/api/v1/photos", data=form), 415)
    await refused(await client.post("/api/v1/photos", data=b""), 415)
    assert_nothing_kept(store, publisher)


async def test_two_files(client, store, publisher, astronaut_jpeg: bytes) -> None:
    form = photo_form(astronaut_jpeg)
    form.add_field("photo", astronaut_jpeg, filename="again.jpg", content_type="image/jpeg")
    await refused(await client.post("/api/v1/photos", data=form), 400)
    form = photo_form(astronaut_jpeg)
    form.add_field("other", astronaut_jpeg, filename="other.jpg", content_type="image/jpeg")
    await refused(await client.post("/api/v1/photos", data=form), 400)
    assert_nothing_kept(store, publisher)


@pytest.mark.parametrize("filename", [b"../../etc/passwd.jpg", b"a\0b.jpg", b"..\\..\\win.jpg", b"\xff\xfe.jpg"],
                         ids=["dotdot", "nul", "backslash", "not-utf8"])
async def test_hostile_filenames_never_reach_storage(client, store, publisher, tmp_path: Path,
                                                     filename: bytes, astronaut_jpeg: bytes) -> None:
    """The client's filename is never used: a valid photo under a hostile name is stored under a server-made key."""
    response = await client.post("/api/v1/photos", data=raw_body(part("photo", astronaut_jpeg, filename=filename,
                                                                       content_type="image/jpeg")),
                                 headers=RAW_HEADERS)
    assert response.status < 500, await response.text()
    names = [p.name for p in stored_files(store)]
    assert all(b"passwd" not in n.encode() and "\0" not in n and "win" not in n for n in names), names
    assert not (tmp_path / "etc").exists()
    if response.status == 202:
        photo_id = (await response.json())["photo_id"]
        assert all(photo_id in str(p) for p in stored_files(store))
    else:
        await refused(response)
        assert_nothing_kept(store, publisher)


async def test_non_utf8_form_field(client, store, publisher, astronaut_jpeg: bytes) -> None:
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg", content_type="image/jpeg"),
                    part("rateable", b"\xff\xfe\xfd"))
    await refused(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400)
    assert_nothing_kept(store, publisher)


@pytest.mark.parametrize("photo_id", [UNKNOWN_ID, "short", "../../meta", "%00", "A" * 65])
async def test_unknown_photo_ids(client, store, publisher, photo_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": "x" * 30})
        assert response.status in (404, 405), (method, photo_id, response.status)
        assert response.content_type == "application/json"
    for suffix in ("image", "share"):
        response = await client.request("GET" if suffix == "image" else "POST", f"/api/v1/photos/{photo_id}/{suffix}")
        assert 400 <= response.status < 500
    assert_nothing_kept(store, publisher)


async def test_deleting_someone_elses_photo_is_403_and_keeps_it(client, store, publisher,
                                                                astronaut_jpeg: bytes) -> None:
    mine = await (await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))).json()
    theirs = await (await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))).json()
    events_before = len(publisher.events)
    for headers in ({"X-Delete-Token": mine["delete_token"]}, {}, {"X-Delete-Token": ""}):
        response = await client.delete(f"/api/v1/photos/{theirs['photo_id']}", headers=headers)
        await refused(response, 403)
    assert len(publisher.events) == events_before
    assert await store.exists(keys.photo(theirs["photo_id"])) and await store.exists(keys.meta(theirs["photo_id"]))
    assert (await client.get(f"/api/v1/photos/{theirs['photo_id']}")).status == 200
