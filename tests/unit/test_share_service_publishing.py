"""The share service's publishing promises: card.rendered waits for the broker or is a TransientError (waited out by
the consumer, never dead-lettered); share.viewed never makes the page wait and is dropped, counted, when it fails."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from libs.common.bus import RecordingPublisher
from libs.common.errors import TransientError
from libs.common.events import Event, PhotoDeleted
from libs.common.ids import new_id
from services.share.publishing import BackgroundPublisher, DurablePublisher


class NotStarted(RecordingPublisher):
    started = False


class Broken(RecordingPublisher):
    async def publish(self, event: Event) -> None:
        raise KafkaConnectionError("broker down")


class Hanging(RecordingPublisher):
    async def publish(self, event: Event) -> None:
        await asyncio.Event().wait()


def event() -> PhotoDeleted:
    return PhotoDeleted(photo_id=new_id())


async def test_durable_publisher_delivers_or_raises_transient() -> None:
    inner = RecordingPublisher()
    await DurablePublisher(inner).publish(sent := event())
    assert inner.events == [sent]
    for publisher in (DurablePublisher(None), DurablePublisher(NotStarted()), DurablePublisher(Broken())):
        with pytest.raises(TransientError):
            await publisher.publish(event())


async def test_background_publisher_returns_at_once_and_counts_what_it_drops() -> None:
    hanging = BackgroundPublisher(Hanging(), timeout_s=0.05)
    assert hanging.submit(event()) is True  # returns before the (never-ending) send
    broken = BackgroundPublisher(DurablePublisher(Broken()))
    broken.submit(event())
    ok_inner = RecordingPublisher()
    ok = BackgroundPublisher(ok_inner)
    ok.submit(sent := event())
    for publisher in (hanging, broken, ok):
        await publisher.drain(timeout_s=1.0)
    assert (hanging.dropped, broken.dropped, ok.dropped) == (1, 1, 0)
    assert ok_inner.events == [sent] and ok.sent == 1
