"""The upload service's small adapters: the publisher guard (every broker failure → BusUnavailable), load shedding,
and the factory choosing the blob store from settings when none is injected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import FormData
from aiokafka.errors import KafkaConnectionError

from libs.common import keys
from libs.common.bus import RecordingPublisher
from libs.common.events import Event, PhotoDeleted
from libs.common.settings import BlobSettings, Settings
from services.upload.app import create_app
from services.upload.deps import Admission
from services.upload.errors import ApiError
from services.upload.publishing import BusUnavailable, GuardedPublisher

EVENT = PhotoDeleted(photo_id="ph0t0ExampleId_abcdef")


class HangingPublisher(RecordingPublisher):
    async def publish(self, event: Event) -> None:
        await asyncio.sleep(3600)


class KafkaFailingPublisher(RecordingPublisher):
    async def publish(self, event: Event) -> None:
        raise KafkaConnectionError("down")


async def test_guard_passes_events_through() -> None:
    inner = RecordingPublisher()
    await GuardedPublisher(inner).publish(EVENT)
    assert inner.events == [EVENT]


@pytest.mark.parametrize(
    "guard",
    [
        GuardedPublisher(None),
        GuardedPublisher(KafkaFailingPublisher()),
        GuardedPublisher(HangingPublisher(), timeout_s=0.05),
    ],
    ids=["unbound", "kafka-error", "hangs"],
)
async def test_guard_turns_every_broker_failure_into_bus_unavailable(guard: GuardedPublisher) -> None:
    with pytest.raises(BusUnavailable):
        await guard.publish(EVENT)


def test_guard_reports_a_producer_that_has_not_started() -> None:
    class Starting(RecordingPublisher):
        started = False

    assert not GuardedPublisher(Starting()).ready
    assert GuardedPublisher(RecordingPublisher()).ready
    assert not GuardedPublisher(None).ready


def test_admission_sheds_load_past_its_limit() -> None:
    admission = Admission(limit=1)
    with admission.slot():
        with pytest.raises(ApiError) as refused, admission.slot():
            pass
        assert (refused.value.status, refused.value.code) == (503, "overloaded")
        assert "Retry-After" in refused.value.headers
    assert admission.active == 0
    with admission.slot():  # the slot is free again
        pass


async def test_factory_builds_the_blob_store_from_settings(aiohttp_client, tmp_path: Path, astronaut_jpeg) -> None:
    settings = Settings(blobs=BlobSettings(backend="local", local_dir=tmp_path / "from-settings"))
    client = await aiohttp_client(create_app(settings, publisher=RecordingPublisher()))
    form = FormData()
    form.add_field("photo", astronaut_jpeg, filename="me.jpg", content_type="image/jpeg")
    response = await client.post("/api/v1/photos", data=form)
    assert response.status == 202
    photo_id = (await response.json())["photo_id"]
    assert [p.name for p in (tmp_path / "from-settings").rglob("*.jpg")] == [Path(keys.photo(photo_id)).name]
