"""A KafkaEventPublisher whose start fails (broker unreachable past the deadline, or the start cancelled at shutdown)
must close the aiokafka producer it created: callers only stop a publisher that started, so the producer's client
would otherwise stay open for the life of the process ("Unclosed AIOKafkaProducer")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from libs.common.bus import KafkaEventPublisher, producer
from libs.common.netutil import LOOPBACK, free_port
from libs.common.settings import KafkaSettings

pytestmark = pytest.mark.integration

START_ATTEMPTS_S = 1.0  # long enough for a few failed connection attempts inside start_with_retry's loop


class RecordingProducer(AIOKafkaProducer):
    """The real producer, noting each instance and whether it was stopped."""

    created: ClassVar[list[RecordingProducer]] = []

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stopped = False
        RecordingProducer.created.append(self)

    async def stop(self) -> None:
        self.stopped = True
        await super().stop()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RecordingProducer]]:
    RecordingProducer.created = []
    monkeypatch.setattr(producer, "AIOKafkaProducer", RecordingProducer)
    yield RecordingProducer.created


def _unreachable() -> KafkaSettings:
    """A loopback port where no broker was ever started: every connection attempt is refused."""
    return KafkaSettings(bootstrap=f"{LOOPBACK}:{free_port()}")


async def test_a_start_past_its_deadline_stops_its_producer(recorded: list[RecordingProducer]) -> None:
    publisher = KafkaEventPublisher(_unreachable(), "test")
    with pytest.raises(KafkaConnectionError):
        await publisher.start(deadline_s=0)
    [created] = recorded
    assert created.stopped  # before anyone calls publisher.stop()
    assert not publisher.started


async def test_a_cancelled_start_stops_its_producer(recorded: list[RecordingProducer]) -> None:
    """As at a service's shutdown while the broker is down (publisher_context cancels the pending start)."""
    publisher = KafkaEventPublisher(_unreachable(), "test")
    start = asyncio.create_task(publisher.start())
    await asyncio.sleep(START_ATTEMPTS_S)
    assert not start.done()  # still retrying
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start
    [created] = recorded
    assert created.stopped
    assert not publisher.started


async def test_stop_closes_a_publisher_whose_start_never_ran(recorded: list[RecordingProducer]) -> None:
    publisher = KafkaEventPublisher(_unreachable(), "test")
    await publisher.stop()
    [created] = recorded
    assert created.stopped
