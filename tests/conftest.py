"""Shared fixtures: real backends on loopback (Tansu broker, moto S3 server, chDB), shared data, sample photos."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from libs.common.broker import EmbeddedBroker
from libs.common.netutil import LOOPBACK, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HOWHOT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
ARTIFACTS = REPO_ROOT / "test-artifacts"


def shared_dataset(name: str) -> Path:
    """Path of ../shared/data/<name>, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA / name
    if not (path / "labels.csv").exists():
        pytest.skip(f"shared dataset {name!r} not found at {path} (set HOWHOT_SHARED_DATA); skipping")
    return path


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu, memory storage) on a free loopback port for the whole session."""
    ARTIFACTS.mkdir(exist_ok=True)
    with EmbeddedBroker(log_file=ARTIFACTS / "tansu.log") as broker:
        yield broker


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    """A real face photo (scikit-image's astronaut, public domain NASA image) as JPEG bytes."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


FIND_EVENT_TIMEOUT_S = 60.0  # a fresh consumer group's join on Tansu can take several seconds


async def _find_event(bootstrap: str, topic: str, photo_id: str) -> tuple[bytes | None, bytes, dict[str, bytes]]:
    """Read ``topic`` from the beginning until the event of ``photo_id`` shows up; return its key, value, headers."""
    from aiokafka import AIOKafkaConsumer

    from libs.common.ids import new_id

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=f"test-{new_id()}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + FIND_EVENT_TIMEOUT_S
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for record in (r for batch in batches.values() for r in batch):
                if photo_id.encode() in (record.value or b""):
                    return record.key, record.value or b"", dict(record.headers)
    finally:
        await consumer.stop()
    raise AssertionError(f"no event for {photo_id} on {topic}")


@pytest.fixture
def find_event() -> Callable[[str, str, str], Awaitable[tuple[bytes | None, bytes, dict[str, bytes]]]]:
    """``await find_event(bootstrap, topic, photo_id)`` → (key, value, headers) of that photo's event on ``topic``."""
    return _find_event
