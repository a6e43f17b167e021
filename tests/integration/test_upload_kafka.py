"""The upload app with its real Kafka producer (publisher_context) against a real Tansu broker: an accepted photo's
photo.uploaded event is on the topic, keyed by photo id and carrying the response's trace id; a broker that cannot be
reached means 503 and nothing stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import FormData

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.broker import EmbeddedBroker
from libs.common.bus import ensure_topics
from libs.common.events import PhotoDeleted, PhotoUploaded, decode_event
from libs.common.netutil import free_port
from libs.common.settings import KafkaSettings, Settings, UploadSettings
from services.upload.app import create_app

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 30.0  # the producer connects in the background after the app starts


def photo_form(data: bytes) -> FormData:
    form = FormData()
    form.add_field("photo", data, filename="me.jpg", content_type="image/jpeg")
    return form


async def wait_until_ready(client) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    while (await client.get("/healthz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, "the producer never connected"
        await asyncio.sleep(0.1)

NO_LIMIT = 10**12


async def test_upload_publishes_photo_uploaded(
    aiohttp_client, kafka_broker: EmbeddedBroker, tmp_path: Path, astronaut_jpeg: bytes, find_event
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap)
    await ensure_topics(kafka)
    store = LocalBlobStore(tmp_path)
    # The session broker holds other tests' photos and no face service consumes them here: no admission limit.
    no_backlog_limit = UploadSettings(max_backlog=NO_LIMIT)
    client = await aiohttp_client(create_app(Settings(kafka=kafka, upload=no_backlog_limit), blob_store=store))
    await wait_until_ready(client)

    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    assert response.status == 202, await response.text()
    body = await response.json()
    photo_id = body["photo_id"]

    key, value, headers = await find_event(kafka.bootstrap, PhotoUploaded.TOPIC, photo_id)
    event = decode_event(value, PhotoUploaded.TOPIC)
    assert isinstance(event, PhotoUploaded)
    assert key == photo_id.encode()
    assert event.blob_key == keys.photo(photo_id)
    assert event.trace_id == body["trace_id"] == headers["trace_id"].decode()
    assert (await store.get(event.blob_key)).data[:3] == b"\xff\xd8\xff"

    deleted = await client.delete(f"/api/v1/photos/{photo_id}", headers={"X-Delete-Token": body["delete_token"]})
    assert deleted.status == 200
    _, value, _ = await find_event(kafka.bootstrap, PhotoDeleted.TOPIC, photo_id)
    assert decode_event(value, PhotoDeleted.TOPIC).photo_id == photo_id  # type: ignore[attr-defined]


async def test_unreachable_broker_means_503_and_nothing_stored(
    aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    nobody = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}")  # nothing listens there
    store = LocalBlobStore(tmp_path)
    client = await aiohttp_client(create_app(Settings(kafka=nobody), blob_store=store))
    response = await client.post("/api/v1/photos", data=photo_form(astronaut_jpeg))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "broker_unavailable"
    assert "Retry-After" in response.headers
    assert await store.list("") == []
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["checks"]["kafka_producer"] is False
