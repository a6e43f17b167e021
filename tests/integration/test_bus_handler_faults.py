"""Handler failures that come from the bus itself, against real Tansu brokers: a handler whose publish fails because
the broker is down must be waited out like any TransientError, never dead-lettered (the photo would leave the pipeline
for good although nothing is wrong with it)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from libs.common.broker import EmbeddedBroker
from libs.common.bus import ConsumerRunner, KafkaEventPublisher, ensure_topics
from libs.common.events import Event, PhotoUploaded
from libs.common.ids import new_id
from libs.common.settings import KafkaSettings

pytestmark = pytest.mark.integration
TOPIC = PhotoUploaded.TOPIC
DOWNSTREAM = "downstream.test"
PUBLISH_TIMEOUT_MS = 1000  # the handler's producer gives up on a dead broker quickly (aiokafka's default is 40 s)


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


def uploaded() -> PhotoUploaded:
    photo_id = new_id()
    return PhotoUploaded(photo_id=photo_id, blob_key=f"photos/{photo_id}.jpg", width=8, height=8, size_bytes=10)


async def test_a_handler_whose_publish_fails_on_a_dead_broker_waits_instead_of_dead_lettering(
    broker: EmbeddedBroker,
) -> None:
    settings = KafkaSettings(bootstrap=broker.bootstrap, partitions=2, retry_backoff_s=0.05, handler_retries=1,
                             session_timeout_ms=6000, heartbeat_interval_ms=500)
    await ensure_topics(settings)
    publisher = KafkaEventPublisher(settings, "test")
    await publisher.start()
    downstream_broker = EmbeddedBroker().start()  # where the handler publishes; it goes down under the handler
    downstream = AIOKafkaProducer(bootstrap_servers=downstream_broker.bootstrap, acks="all",
                                  request_timeout_ms=PUBLISH_TIMEOUT_MS)
    await downstream.start()
    await downstream.send_and_wait(DOWNSTREAM, b"warm-up")
    downstream_broker.stop()
    event = uploaded()
    await publisher.publish(event)
    failures: list[str] = []
    done: list[str] = []

    async def handler(e: Event) -> None:
        if e.event_id != event.event_id:
            return
        try:
            await downstream.send_and_wait(DOWNSTREAM, e.to_bytes())
        except Exception as exc:
            failures.append(type(exc).__name__)
            raise
        done.append(str(e.event_id))

    runner = ConsumerRunner(settings, group_id=f"g-{new_id()}", topics=[TOPIC], dlq_publisher=publisher,
                            handler=handler)
    task = asyncio.create_task(runner.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(failures) < 2 * (1 + settings.handler_retries) and not runner.stats.dead_lettered:
            assert asyncio.get_running_loop().time() < deadline, f"handler not retried enough: {failures}"
            assert not task.done(), f"runner died: {task.exception()!r}"
            await asyncio.sleep(0.1)
        # twice the attempts a bug gets, and still no dead letter
        assert runner.stats.dead_lettered == 0, f"a healthy event was dead-lettered after {failures}"
        downstream_broker = EmbeddedBroker(port=downstream_broker.port).start()  # the broker is back, same address
        deadline = asyncio.get_running_loop().time() + 60
        while not done:
            assert asyncio.get_running_loop().time() < deadline, "event not handled after the broker came back"
            await asyncio.sleep(0.1)
        assert runner.stats.dead_lettered == 0
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await downstream.stop()
        await publisher.stop()
        downstream_broker.stop()
