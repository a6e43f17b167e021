"""POST /api/v1/photos through the real app factory: the happy path, every refusal of bad input with its exact status
and code, and the broker-down path (503, nothing left stored). Fakes: LocalBlobStore(tmp_path), RecordingPublisher."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import FormData, web
from aiokafka.errors import KafkaConnectionError
from PIL import Image

from libs.common import keys
from libs.common.blobs import BlobStoreUnavailable, LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta
from libs.common.events import Event, PhotoUploaded
from libs.common.ids import hash_secret
from libs.common.settings import CoreSettings, Settings, UploadSettings
from services.upload.app import MULTIPART_SLACK_BYTES, create_app
from tests.multipart import BOUNDARY, RAW_HEADERS, part, raw_body

BASE_URL = "https://howhot.test"
MAX_BYTES = 400_000  # small limit so the too-large cases stay fast; the astronaut JPEG is well under it
MIN_ID_BITS = 96


def make_settings(**upload: float) -> Settings:
    return Settings(
        core=CoreSettings(public_base_url=BASE_URL),
        upload=UploadSettings(max_bytes=MAX_BYTES, **upload),
    )


class FailingPublisher(RecordingPublisher):
    """A started producer whose broker went away: every publish raises a Kafka error."""

    started = True

    async def publish(self, event: Event) -> None:
        raise KafkaConnectionError("broker down")


class NotStartedPublisher(RecordingPublisher):
    """A producer still trying to connect at start-up."""

    started = False


class BrokenStore(LocalBlobStore):
    """A blob store whose puts fail with ``error``."""

    def __init__(self, root: Path, error: Exception) -> None:
        super().__init__(root)
        self.error = error

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        raise self.error


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore, publisher: RecordingPublisher):
    return await aiohttp_client(create_app(make_settings(), blob_store=store, publisher=publisher))


def photo_form(data: bytes, **fields: str) -> FormData:
    form = FormData()
    form.add_field("photo", data, filename="me.jpg", content_type="image/jpeg")
    for name, value in fields.items():
        form.add_field(name, value)
    return form




async def assert_error(response, status: int, code: str) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width``×``height`` (a decompression bomb's calling card) with no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def id_bits(value: str) -> int:
    return len(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))) * 8


# -- happy path ---------------------------------------------------------------------------------------------------


async def test_upload_accepted_stored_and_announced(client, store, publisher, astronaut_jpeg: bytes) -> None:
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    assert response.status == 202, await response.text()
    body = await response.json()
    assert set(body) == {"photo_id", "status_url", "delete_token", "trace_id"}
    photo_id, token = body["photo_id"], body["delete_token"]
    assert body["status_url"] == f"{BASE_URL}/api/v1/photos/{photo_id}"
    assert response.headers["Location"] == body["status_url"]

    stored = await store.get(keys.photo(photo_id))
    assert stored.content_type == "image/jpeg"
    assert stored.data[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(stored.data)).size == (512, 512)

    raw_meta = (await store.get(keys.meta(photo_id))).data
    meta = PhotoMeta.model_validate_json(raw_meta)
    assert meta.delete_token_sha256 == hash_secret(token)
    assert token.encode() not in raw_meta  # the token itself is never stored
    assert (meta.rateable, meta.store_photo, meta.width, meta.height) == (False, True, 512, 512)

    [event] = publisher.events
    assert isinstance(event, PhotoUploaded)
    assert event.photo_id == photo_id
    assert event.blob_key == keys.photo(photo_id)
    assert (event.width, event.height, event.size_bytes) == (512, 512, len(stored.data))
    assert (event.rateable, event.store_photo) == (False, True)
    assert event.trace_id == body["trace_id"]
    assert event.producer == "upload"
    assert sorted(await store.list("")) == sorted([keys.photo(photo_id), keys.meta(photo_id)])


@pytest.mark.parametrize(
    ("fields", "rateable", "store_photo"),
    [
        ({"rateable": "true"}, True, True),
        ({"rateable": "on", "store": "false"}, True, False),
        ({"store": "0"}, False, False),
    ],
)
async def test_owner_choices_reach_meta_and_event(
    client, store, publisher, astronaut_jpeg: bytes, fields: dict, rateable: bool, store_photo: bool
) -> None:
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg, **fields))
    assert response.status == 202
    photo_id = (await response.json())["photo_id"]
    meta = PhotoMeta.model_validate_json((await store.get(keys.meta(photo_id))).data)
    assert (meta.rateable, meta.store_photo) == (rateable, store_photo)
    assert (publisher.events[0].rateable, publisher.events[0].store_photo) == (rateable, store_photo)


async def test_ids_and_tokens_are_unguessable_and_unique(client, astronaut_jpeg: bytes) -> None:
    bodies = [await (await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))).json() for _ in range(3)]
    for body in bodies:
        assert id_bits(body["photo_id"]) >= MIN_ID_BITS
        assert id_bits(body["delete_token"]) >= MIN_ID_BITS
    assert len({b["photo_id"] for b in bodies}) == len(bodies)
    assert len({b["trace_id"] for b in bodies}) == len(bodies)


async def test_png_and_webp_are_stored_as_jpeg(client, store) -> None:
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 120, 90)).save(buf, fmt)
        response = await client.post("/api/v1/photos", data=photo_form(buf.getvalue()))
        assert response.status == 202
        photo_id = (await response.json())["photo_id"]
        assert (await store.get(keys.photo(photo_id))).data[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("filename", [b"../../etc/passwd", b"..\\..\\boot.ini", b"\xff\xfe.jpg", b"a" * 2000])
async def test_hostile_filenames_are_ignored(client, store, astronaut_jpeg: bytes, filename: bytes) -> None:
    response = await client.post(
        "/api/v1/photos", data=raw_body(part("photo", astronaut_jpeg, filename=filename)), headers=RAW_HEADERS
    )
    assert response.status == 202, await response.text()
    photo_id = (await response.json())["photo_id"]
    assert sorted(await store.list("")) == sorted([keys.photo(photo_id), keys.meta(photo_id)])


async def test_nul_in_filename_is_a_malformed_header_not_a_crash(client, store, astronaut_jpeg: bytes) -> None:
    """NUL is not allowed in a header (RFC 9110), so aiohttp's part parser refuses it: a 400, nothing stored."""
    body = raw_body(part("photo", astronaut_jpeg, filename=b"evil\x00.jpg"))
    response = await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS)
    await assert_error(response, 400, "malformed_multipart")
    assert await store.list("") == []


@pytest.mark.parametrize("charset", [b"x" * 40, b"\xff\xfe"])
async def test_hostile_charset_field(client, astronaut_jpeg: bytes, charset: bytes) -> None:
    """RFC 7578's ``_charset_`` field is interpreted by aiohttp itself; garbage there is still only a 400."""
    body = raw_body(part("_charset_", charset), part("photo", astronaut_jpeg, filename=b"a.jpg"))
    response = await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS)
    assert response.status == 400, await response.text()


# -- bad input: never 5xx ---------------------------------------------------------------------------------------------


async def test_empty_file(client, store, publisher) -> None:
    await assert_error(await client.post("/api/v1/photos", data=photo_form(b"")), 400, "empty")
    assert await store.list("") == []
    assert publisher.events == []


async def test_missing_photo_field(client, astronaut_jpeg: bytes) -> None:
    form = FormData(default_to_multipart=True)
    form.add_field("picture", "not a file")
    await assert_error(await client.post("/api/v1/photos", data=form), 400, "missing_photo")


async def test_empty_form(client) -> None:
    await assert_error(await client.post("/api/v1/photos", data=raw_body(), headers=RAW_HEADERS), 400, "missing_photo")


async def test_two_photos(client, astronaut_jpeg: bytes) -> None:
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg"), part("photo", astronaut_jpeg, filename=b"b.jpg"))
    await assert_error(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400, "too_many_files")


async def test_second_file_in_another_field(client, astronaut_jpeg: bytes) -> None:
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg"), part("other", b"xx", filename=b"b.jpg"))
    await assert_error(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400, "unexpected_file")


@pytest.mark.parametrize(
    ("flag", "code"),
    [
        (b"\xff\xfe\xfa", "invalid_encoding"),
        (b"maybe", "invalid_field"),
        (b"", "invalid_field"),
        (b"1" * 100, "invalid_field"),
    ],
)
async def test_bad_flag_values(client, astronaut_jpeg: bytes, flag: bytes, code: str) -> None:
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg"), part("rateable", flag))
    await assert_error(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400, code)


async def test_duplicate_flag(client, astronaut_jpeg: bytes) -> None:
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg"), part("store", b"true"), part("store", b"false"))
    await assert_error(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400, "duplicate_field")


async def test_too_many_parts(client, astronaut_jpeg: bytes) -> None:
    extras = [part(f"x{i}", b"1") for i in range(10)]
    body = raw_body(part("photo", astronaut_jpeg, filename=b"a.jpg"), *extras)
    await assert_error(await client.post("/api/v1/photos", data=body, headers=RAW_HEADERS), 400, "too_many_parts")


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/json", b'{"photo": "x"}'),
        ("application/x-www-form-urlencoded", b"photo=abc"),
        ("image/jpeg", b"\xff\xd8"),
    ],
)
async def test_not_multipart(client, content_type: str, data: bytes) -> None:
    response = await client.post("/api/v1/photos", data=data, headers={"Content-Type": content_type})
    await assert_error(response, 415, "not_multipart")


async def test_no_body_at_all(client) -> None:
    await assert_error(await client.post("/api/v1/photos"), 415, "not_multipart")


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", b"--x\r\n"),  # no boundary parameter
        (f"multipart/form-data; boundary={BOUNDARY}", b"no boundary anywhere in here"),
        (f"multipart/form-data; boundary={BOUNDARY}", b"--" + BOUNDARY.encode() + b"\r\nBroken header line\r\n\r\nx"),
        (f"multipart/form-data; boundary={'b' * 80}", b"--" + b"b" * 80 + b"--\r\n"),  # boundary too long
        (RAW_HEADERS["Content-Type"], raw_body(part("photo", b"x", filename=b"a" * 10_000))),  # header line too long
        (  # a nested multipart part
            RAW_HEADERS["Content-Type"],
            raw_body(part("photo", b"--zz\r\n\r\nx\r\n--zz--", content_type="multipart/mixed; boundary=zz")),
        ),
        (RAW_HEADERS["Content-Type"], b""),  # empty body
    ],
)
async def test_malformed_multipart(client, content_type: str, data: bytes) -> None:
    response = await client.post("/api/v1/photos", data=data, headers={"Content-Type": content_type})
    await assert_error(response, 400, "malformed_multipart")


async def test_body_over_client_max_size_by_content_length(client, store) -> None:
    big = b"\xff\xd8\xff" + b"\0" * (MAX_BYTES + MULTIPART_SLACK_BYTES)
    await assert_error(await client.post("/api/v1/photos", data=photo_form(big)), 413, "too_large")
    assert await store.list("") == []


async def test_photo_over_max_bytes_streamed_without_length(client) -> None:
    body = raw_body(part("photo", b"\xff\xd8\xff" + b"\0" * MAX_BYTES, filename=b"big.jpg"))

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit must trip while streaming
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    response = await client.post("/api/v1/photos", data=chunked(), headers=RAW_HEADERS)
    await assert_error(response, 413, "too_large")


async def test_preamble_is_allowed_but_counts_against_the_body_limit(client, store, astronaut_jpeg: bytes) -> None:
    photo = part("photo", astronaut_jpeg, filename=b"a.jpg", content_type="image/jpeg")

    async def chunked(preamble: bytes) -> AsyncIterator[bytes]:  # no Content-Length: only the stream can tell
        for start in range(0, len(preamble), 65_536):
            yield preamble[start : start + 65_536]
        yield raw_body(photo)

    small = b"This is a multi-part message in MIME format.\r\n"
    response = await client.post("/api/v1/photos", data=chunked(small), headers=RAW_HEADERS)
    assert response.status == 202, await response.text()
    large = (b"x" * 998 + b"\r\n") * ((MAX_BYTES + MULTIPART_SLACK_BYTES) // 1000)  # the photo would tip it over
    await assert_error(await client.post("/api/v1/photos", data=chunked(large), headers=RAW_HEADERS), 413, "too_large")
    assert len(await store.list("photos/")) == 1


async def test_aiohttp_entity_too_large_becomes_json(aiohttp_client, store, publisher) -> None:
    """Any aiohttp HTTPRequestEntityTooLarge (here from request.read()) gets our JSON error shape."""
    app = create_app(make_settings(), blob_store=store, publisher=publisher)

    async def reads_everything(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app.router.add_post("/test/read", reads_everything)
    client = await aiohttp_client(app)
    response = await client.post("/test/read", data=b"x" * (MAX_BYTES + MULTIPART_SLACK_BYTES + 1))
    await assert_error(response, 413, "too_large")


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"\xff\xd8\xff\xe0" + b"garbage" * 100, 415, "undecodable"),
        (b"GIF89a" + b"\0" * 100, 415, "unsupported_type"),
        (b"%PDF-1.7 not a photo", 415, "unsupported_type"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "unsupported_type"),
        (png_header_only(100_000, 100_000), 413, "too_many_pixels"),
    ],
)
async def test_bad_images(client, store, publisher, data: bytes, status: int, code: str) -> None:
    await assert_error(await client.post("/api/v1/photos", data=photo_form(data)), status, code)
    assert await store.list("") == []
    assert publisher.events == []


async def test_truncated_jpeg_is_undecodable(client, astronaut_jpeg: bytes) -> None:
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg[: len(astronaut_jpeg) // 2]))
    await assert_error(response, 415, "undecodable")


async def test_too_many_pixels_by_setting(aiohttp_client, store, publisher, astronaut_jpeg: bytes) -> None:
    app = create_app(make_settings(max_pixels=100_000), blob_store=store, publisher=publisher)
    client = await aiohttp_client(app)
    await assert_error(await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg)), 413, "too_many_pixels")


async def test_client_disconnect_mid_upload_is_not_a_server_error(
    store, publisher, caplog: pytest.LogCaptureFixture
) -> None:
    """A phone losing its connection mid-upload must not page anyone: no 500, no stack trace, nothing stored.

    Runs under web.AppRunner like run_service (handlers are not cancelled on disconnect; the test server would
    cancel them and hide this path).
    """
    runner = web.AppRunner(create_app(make_settings(), blob_store=store, publisher=publisher))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        _, writer = await asyncio.open_connection(host, port)
        head = (
            "POST /api/v1/photos HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n"
            f"Content-Type: {RAW_HEADERS['Content-Type']}\r\n\r\n"
        ).encode()
        writer.write(head + part("photo", b"\xff\xd8\xff" + b"x" * 1000, filename=b"a.jpg")[:-2])
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
        writer.close()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/metrics") as metrics:
            text = await metrics.text()
    finally:
        await runner.cleanup()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 'route="/api/v1/photos",status="400"' in text
    assert 'status="500"' not in text
    assert await store.list("") == []


async def test_trickling_body_gets_408_at_the_deadline(aiohttp_client, store, publisher) -> None:
    """The deadline covers the whole body, not the gaps between bytes: a client that keeps sending a line every
    few milliseconds (slowloris) is still cut off."""
    app = create_app(make_settings(body_timeout_s=0.2), blob_store=store, publisher=publisher)
    client = await aiohttp_client(app)

    async def trickle() -> AsyncIterator[bytes]:
        yield b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
        for _ in range(1000):  # 10 s at this pace, far past the deadline
            await asyncio.sleep(0.01)
            yield b"\0"

    started = asyncio.get_running_loop().time()
    response = await client.post("/api/v1/photos", data=trickle(), headers=RAW_HEADERS)
    await assert_error(response, 408, "body_timeout")
    assert asyncio.get_running_loop().time() - started < 5
    assert await store.list("") == [] and publisher.events == []


async def test_unknown_route_and_wrong_method_are_json(client) -> None:
    await assert_error(await client.get("/api/v1/nope"), 404, "not_found")
    response = await client.put("/api/v1/photos")
    await assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


# -- backends down ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("broken", [FailingPublisher, NotStartedPublisher])
async def test_broker_down_is_503_and_nothing_stays_stored(
    aiohttp_client, store, astronaut_jpeg: bytes, broken: type[RecordingPublisher]
) -> None:
    client = await aiohttp_client(create_app(make_settings(), blob_store=store, publisher=broken()))
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    await assert_error(response, 503, "broker_unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert await store.list("") == []
    health = await client.get("/healthz")
    assert (await health.json())["checks"]["event_publisher"] is (broken is FailingPublisher)


async def test_storage_down_is_503(aiohttp_client, tmp_path: Path, publisher, astronaut_jpeg: bytes) -> None:
    store = BrokenStore(tmp_path, BlobStoreUnavailable("disk gone"))
    client = await aiohttp_client(create_app(make_settings(), blob_store=store, publisher=publisher))
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    await assert_error(response, 503, "storage_unavailable")
    assert "Retry-After" in response.headers
    assert publisher.events == []


class MetaPutFails(LocalBlobStore):
    """The photo is written, then the meta write fails: the photo must not be left behind."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key.startswith("meta/"):
            raise BlobStoreUnavailable("meta write failed")
        await super().put(key, data, content_type)


async def test_half_written_upload_is_removed(aiohttp_client, tmp_path: Path, publisher, astronaut_jpeg: bytes) -> None:
    store = MetaPutFails(tmp_path)
    client = await aiohttp_client(create_app(make_settings(), blob_store=store, publisher=publisher))
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    await assert_error(response, 503, "storage_unavailable")
    assert await store.list("") == []
    assert publisher.events == []


async def test_unexpected_error_is_logged_json_500(
    aiohttp_client, tmp_path: Path, publisher, astronaut_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore(tmp_path, RuntimeError("a bug"))
    client = await aiohttp_client(create_app(make_settings(), blob_store=store, publisher=publisher))
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    body = await assert_error(response, 500, "internal_error")
    assert "a bug" not in json.dumps(body)  # internals stay in the log
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


async def test_healthz_ok_with_working_fakes(client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"event_publisher": True, "blob_store": True}


async def test_metrics_count_requests_by_final_status(client) -> None:
    await client.post("/api/v1/photos", data=photo_form(b""))
    text = await (await client.get("/metrics")).text()
    assert 'howhot_http_requests_total{route="/api/v1/photos",status="400"} 1.0' in text
    assert "howhot_upload_in_flight 0.0" in text
