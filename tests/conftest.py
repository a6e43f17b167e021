"""Shared fixtures: real backends on loopback (Tansu broker, moto S3 server, chDB), shared data, sample photos."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
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
