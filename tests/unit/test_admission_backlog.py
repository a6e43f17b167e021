"""Admission control through the real upload app: 503 busy + Retry-After over the backlog threshold (nothing stored,
nothing published), fail-open on an unknown or stale reading, 429 + Retry-After from the per-client bucket (never
charged for a 503), and the body deadline that keeps stalled uploads from holding the in-flight slots."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import FormData

from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.settings import CoreSettings, Settings, UploadSettings
from services.upload.admission import BUSY_RETRY_AFTER_S, BUSY_RETRY_JITTER_S, BacklogGate, poll_backlog
from services.upload.app import MAX_UPLOADS_IN_FLIGHT, create_app
from services.upload.deps import DEPS
from tests.multipart import BOUNDARY, RAW_HEADERS

THRESHOLD = 5
POLL_S = 0.02


class FakeProbe:
    """A backlog whose value the test sets; ``fail`` makes measurements raise (broker unreachable)."""

    def __init__(self) -> None:
        self.value = 0
        self.fail = False
        self.closed = False

    async def measure(self) -> int:
        if self.fail:
            raise ConnectionError("broker unreachable")
        return self.value

    async def close(self) -> None:
        self.closed = True


def settings(**upload: float) -> Settings:
    args = {"max_backlog": THRESHOLD, "backlog_poll_s": POLL_S} | upload
    return Settings(core=CoreSettings(public_base_url="https://howhot.test"), upload=UploadSettings(**args))


def form(jpeg: bytes) -> FormData:
    data = FormData()
    data.add_field("photo", jpeg, filename="me.jpg", content_type="image/jpeg")
    return data


async def settle() -> None:
    await asyncio.sleep(POLL_S * 5)


async def test_over_threshold_answers_503_busy_and_stores_nothing(
    aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    probe, publisher, store = FakeProbe(), RecordingPublisher(), LocalBlobStore(tmp_path / "b")
    client = await aiohttp_client(create_app(settings(), blob_store=store, publisher=publisher, backlog_probe=probe))
    probe.value = THRESHOLD + 1
    await settle()
    response = await client.post("/api/v1/photos", data=form(astronaut_jpeg))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "busy"
    retry_after = int(response.headers["Retry-After"])
    assert BUSY_RETRY_AFTER_S <= retry_after <= BUSY_RETRY_AFTER_S + BUSY_RETRY_JITTER_S
    assert publisher.events == [] and not any((tmp_path / "b").rglob("*.*"))

    probe.value = THRESHOLD  # at the threshold: accepted again
    await settle()
    response = await client.post("/api/v1/photos", data=form(astronaut_jpeg))
    assert response.status == 202, await response.text()


async def test_unknown_backlog_fails_open(aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes) -> None:
    probe = FakeProbe()
    probe.value, probe.fail = 10 * THRESHOLD, True
    app = create_app(settings(), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher(),
                     backlog_probe=probe)
    client = await aiohttp_client(app)
    await settle()
    assert app[DEPS].backlog is not None and app[DEPS].backlog.current is None
    response = await client.post("/api/v1/photos", data=form(astronaut_jpeg))
    assert response.status == 202


async def test_probe_is_closed_with_the_app(aiohttp_client, tmp_path: Path) -> None:
    probe = FakeProbe()
    client = await aiohttp_client(
        create_app(settings(), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher(), backlog_probe=probe)
    )
    await client.close()
    assert probe.closed


def test_stale_reading_is_ignored() -> None:
    now = [0.0]
    gate = BacklogGate(THRESHOLD, poll_s=1.0, clock=lambda: now[0], jitter=lambda: 0.0)
    gate.record(THRESHOLD + 100)
    with pytest.raises(Exception) as refused:
        gate.check()
    assert refused.value.headers["Retry-After"] == str(BUSY_RETRY_AFTER_S)  # type: ignore[attr-defined]
    now[0] = 60.0  # nobody has measured for a minute: do not keep refusing on old news
    gate.check()


async def test_poll_loop_survives_failures() -> None:
    probe = FakeProbe()
    gate = BacklogGate(THRESHOLD, poll_s=POLL_S)
    stop = asyncio.Event()
    task = asyncio.create_task(poll_backlog(gate, probe, stop))
    probe.fail = True
    await settle()
    assert gate.current is None
    probe.fail, probe.value = False, 7
    await settle()
    assert gate.current == 7
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_rate_limit_answers_429_with_retry_after_per_visitor(
    aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    app = create_app(settings(rate_limit_burst=2, rate_limit_per_minute=6.0), blob_store=LocalBlobStore(tmp_path),
                     publisher=RecordingPublisher())
    client = await aiohttp_client(app)
    cookie = {"Cookie": "hh_vid=" + "A" * 22}
    statuses = [(await client.post("/api/v1/photos", data=form(astronaut_jpeg), headers=cookie)).status
                for _ in range(2)]
    assert statuses == [202, 202]
    refused = await client.post("/api/v1/photos", data=form(astronaut_jpeg), headers=cookie)
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) == 10
    other = await client.post("/api/v1/photos", data=form(astronaut_jpeg), headers={"Cookie": "hh_vid=" + "B" * 22})
    assert other.status == 202


async def test_overloaded_refusals_spend_no_tokens(aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes) -> None:
    """A 503 for the crowd is not the client's doing: once the overload is over, its full burst is still there."""
    app = create_app(settings(rate_limit_burst=2), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    client = await aiohttp_client(app)
    cookie = {"Cookie": "hh_vid=" + "A" * 22}
    admission = app[DEPS].admission
    admission.active = admission.limit  # every slot is held by other people's uploads
    for _ in range(5):
        refused = await client.post("/api/v1/photos", data=form(astronaut_jpeg), headers=cookie)
        assert (refused.status, (await refused.json())["error"]["code"]) == (503, "overloaded")
    admission.active = 0
    statuses = [(await client.post("/api/v1/photos", data=form(astronaut_jpeg), headers=cookie)).status
                for _ in range(3)]
    assert statuses == [202, 202, 429]


async def test_stalled_bodies_time_out_and_free_their_slots(
    aiohttp_client, tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    """Slowloris: one address starts MAX_UPLOADS_IN_FLIGHT uploads and stops sending. Each gets 408 body_timeout once
    the body deadline passes, and the slots it held serve honest uploads again."""
    app = create_app(settings(body_timeout_s=0.3), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    client = await aiohttp_client(app)
    admission = app[DEPS].admission
    stall = asyncio.Event()

    async def stalled_body() -> AsyncIterator[bytes]:
        yield b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
        await stall.wait()  # the client just stops sending

    async def stalled_upload() -> tuple[int, str]:
        response = await client.post("/api/v1/photos", data=stalled_body(), headers=RAW_HEADERS)
        return response.status, (await response.json())["error"]["code"]

    stalled = [asyncio.create_task(stalled_upload()) for _ in range(MAX_UPLOADS_IN_FLIGHT)]
    try:
        async with asyncio.timeout(5):
            while admission.active < admission.limit:
                await asyncio.sleep(0.01)
        refused = await client.post("/api/v1/photos", data=form(astronaut_jpeg))
        assert (refused.status, (await refused.json())["error"]["code"]) == (503, "overloaded")
        async with asyncio.timeout(5):
            answers = await asyncio.gather(*stalled)
        assert set(answers) == {(408, "body_timeout")}
        assert admission.active == 0
        response = await client.post("/api/v1/photos", data=form(astronaut_jpeg))
        assert response.status == 202, await response.text()
    finally:
        stall.set()
        for task in stalled:
            task.cancel()
