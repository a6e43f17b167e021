"""The consumer runner against a real Kafka-protocol broker (Tansu): DLQ, retries, commit-after-processing, drain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from libs.common.broker import EmbeddedBroker
from libs.common.bus import ConsumerRunner, KafkaEventPublisher, ensure_topics
from libs.common.events import Event, PhotoUploaded, dlq_topic
from libs.common.ids import new_id
from libs.common.settings import KafkaSettings

pytestmark = pytest.mark.integration
TOPIC = PhotoUploaded.TOPIC


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
async def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    settings = KafkaSettings(bootstrap=broker.bootstrap, partitions=2, retry_backoff_s=0.01, handler_retries=2,
                             session_timeout_ms=6000, heartbeat_interval_ms=500)
    await ensure_topics(settings)
    return settings


def uploaded() -> PhotoUploaded:
    photo_id = new_id()
    return PhotoUploaded(photo_id=photo_id, blob_key=f"photos/{photo_id}.jpg", width=8, height=8, size_bytes=10)


async def read_all(settings: KafkaSettings, topic: str, expect: int, timeout_s: float = 15) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.bootstrap, auto_offset_reset="earliest",
                                group_id=f"reader-{new_id()}", enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            got = await consumer.getmany(timeout_ms=300)
            out.extend(r for batch in got.values() for r in batch)
    finally:
        await consumer.stop()
    return out


async def run_until(runner: ConsumerRunner, condition, timeout_s: float = 20) -> None:
    task = asyncio.create_task(runner.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
            assert not task.done(), f"runner died: {task.exception() if task.done() else ''}"
            await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 15)


async def test_malformed_and_failing_messages_are_dead_lettered_and_the_loop_goes_on(kafka: KafkaSettings) -> None:
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    poison, good = uploaded(), uploaded()
    try:
        await raw.send_and_wait(TOPIC, b"\xff\xfe not json")
        await raw.send_and_wait(TOPIC, b'{"type": "photo.uploaded", "photo_id": "x"}')
        await publisher.publish(poison)
        await publisher.publish(good)
        seen: list[Event] = []
        attempts: dict[str, int] = {}

        async def handler(event: Event) -> None:
            assert isinstance(event, PhotoUploaded)
            attempts[event.photo_id] = attempts.get(event.photo_id, 0) + 1
            if event.photo_id == poison.photo_id:
                raise RuntimeError("boom: handler cannot process this photo")
            seen.append(event)

        runner = ConsumerRunner(kafka, group_id=f"g-{new_id()}", topics=[TOPIC], dlq_publisher=publisher,
                                handler=handler)
        await run_until(runner, lambda: any(e.event_id == good.event_id for e in seen))
        assert attempts[poison.photo_id] == 1 + kafka.handler_retries  # bounded retries
        dead = await read_all(kafka, dlq_topic(TOPIC), expect=3)
        errors = [dict(r.headers)["error_type"].decode() for r in dead]
        assert errors.count("InvalidEvent") >= 2
        assert "RuntimeError" in errors
        poisoned = [r for r in dead if dict(r.headers)["error_type"] == b"RuntimeError"]
        assert poisoned[-1].value == poison.to_bytes()  # the original bytes travel to the DLQ
        assert b"boom" in dict(poisoned[-1].headers)["error"]
    finally:
        await raw.stop()
        await publisher.stop()


async def test_offsets_are_committed_only_after_handling(kafka: KafkaSettings) -> None:
    """A handler that crashes the process (simulated by stopping before success) must see the event again."""
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    event = uploaded()
    await publisher.publish(event)
    group = f"g-{new_id()}"
    handled: list[str] = []
    gate = asyncio.Event()

    async def slow_handler(e: Event) -> None:
        if e.event_id == event.event_id:
            gate.set()
            await asyncio.sleep(3600)  # never finishes: the process "dies" mid-handling

    first = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=slow_handler)
    task = asyncio.create_task(first.run())
    await asyncio.wait_for(gate.wait(), 20)
    task.cancel()  # hard stop: no commit happened
    with pytest.raises(asyncio.CancelledError):
        await task

    async def handler(e: Event) -> None:
        handled.append(str(e.event_id))

    second = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=handler)
    await run_until(second, lambda: str(event.event_id) in handled, timeout_s=40)
    await publisher.stop()


@pytest.mark.parametrize("pipelined", [False, True])
async def test_batch_handler_isolates_a_poison_message(kafka: KafkaSettings, pipelined: bool) -> None:
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    events = [uploaded() for _ in range(5)]
    poison = events[2]
    await publisher.publish_many(events)
    written: set[str] = set()

    async def batch_handler(deliveries) -> None:
        if any(d.event.event_id == poison.event_id for d in deliveries):
            raise ValueError("cannot write this row")
        written.update(str(d.event.event_id) for d in deliveries)

    runner = ConsumerRunner(kafka, group_id=f"g-{new_id()}", topics=[TOPIC], dlq_publisher=publisher,
                            batch_handler=batch_handler, max_records=100, max_wait_s=0.2, pipelined=pipelined)
    want = {str(e.event_id) for e in events if e is not poison}
    await run_until(runner, lambda: want <= written)
    assert str(poison.event_id) not in written
    assert runner.stats.dead_lettered >= 1
    await publisher.stop()


async def test_dlq_command_lists_and_replays_dead_letters(kafka: KafkaSettings) -> None:
    from libs.cli.dlq import list_dead_letters, replay_dead_letters

    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    event = uploaded()
    await raw.send_and_wait(dlq_topic(TOPIC), event.to_bytes(), headers=[
        ("error_type", b"RuntimeError"), ("error", b"s3 was down"), ("source_topic", TOPIC.encode()),
    ])
    await raw.stop()
    letters = await list_dead_letters(kafka, TOPIC)
    assert any(letter.value == event.to_bytes() and letter.error == "s3 was down" for letter in letters)
    assert await replay_dead_letters(kafka, TOPIC) >= 1
    assert await replay_dead_letters(kafka, TOPIC) == 0  # committed: a second replay does nothing
    back = await read_all(kafka, TOPIC, expect=10_000, timeout_s=3)
    assert any(r.value == event.to_bytes() for r in back)
