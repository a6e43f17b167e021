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


@pytest.mark.parametrize("pipelined", [False, True])
async def test_a_rebalance_during_a_batch_does_not_kill_the_consumer(kafka: KafkaSettings, pipelined: bool) -> None:
    """A handles a batch from both partitions while B joins the group and takes one: A's commit must skip the partition
    it lost (aiokafka raises IllegalStateError for it), and A must go on consuming."""
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    await publisher.publish_many([uploaded() for _ in range(20)])  # both partitions have data for A's first fetch
    group = f"g-{new_id()}"
    a_busy, b_assigned = asyncio.Event(), asyncio.Event()
    handled: dict[str, list[str]] = {"A": [], "B": []}

    async def handler_a(e: Event) -> None:
        if not a_busy.is_set():
            a_busy.set()
            await asyncio.wait_for(b_assigned.wait(), 60)  # hold the batch until the rebalance gave B a partition
        handled["A"].append(str(e.event_id))

    async def handler_b(e: Event) -> None:
        handled["B"].append(str(e.event_id))

    a = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=handler_a,
                       max_records=500, pipelined=pipelined)
    b = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=handler_b)
    task_a = asyncio.create_task(a.run())
    task_b: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(a_busy.wait(), 40)
        assert a._consumer is not None and len(a._consumer.assignment()) == 2
        task_b = asyncio.create_task(b.run())
        deadline = asyncio.get_running_loop().time() + 60
        while not (b._consumer is not None and b._consumer.assignment()):
            assert asyncio.get_running_loop().time() < deadline, "B never got a partition"
            await asyncio.sleep(0.1)
        b_assigned.set()
        later = [uploaded() for _ in range(12)]  # random keys: both partitions get some
        await publisher.publish_many(later)
        want = {str(e.event_id) for e in later}
        deadline = asyncio.get_running_loop().time() + 40
        while not (want <= set(handled["A"] + handled["B"]) and want & set(handled["A"])):
            assert not task_a.done(), f"consumer A died: {task_a.exception()!r}"
            assert asyncio.get_running_loop().time() < deadline, "events after the rebalance were not consumed"
            await asyncio.sleep(0.1)
        assert not task_a.done(), f"consumer A died: {task_a.exception()!r}"
    finally:
        a.stop()
        b.stop()
        await asyncio.wait_for(asyncio.gather(task_a, *([task_b] if task_b else []), return_exceptions=True), 30)
        await publisher.stop()


async def test_dlq_replay_publishes_each_message_once_though_every_group_dead_lettered_it(kafka: KafkaSettings) -> None:
    """photo.uploaded is read by several groups, so one poison message leaves one dead letter per group; a replay
    that republished every copy would have each group dead-letter each copy again (the DLQ doubling per replay)."""
    from libs.cli.dlq import list_dead_letters, replay_dead_letters

    poison = f"not json {new_id()}".encode()
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    await raw.send_and_wait(TOPIC, poison)
    await raw.stop()

    async def ok(_: Event) -> None:
        pass

    groups = [f"face-{new_id()}", f"analytics-{new_id()}"]
    runners = [ConsumerRunner(kafka, group_id=g, topics=[TOPIC], dlq_publisher=publisher, handler=ok) for g in groups]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        deadline = asyncio.get_running_loop().time() + 40
        while sum(r.stats.dead_lettered for r in runners) < 2 or not all(r.stats.dead_lettered for r in runners):
            assert asyncio.get_running_loop().time() < deadline, "poison message not dead-lettered by both groups"
            await asyncio.sleep(0.1)
    finally:
        for r in runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        await publisher.stop()
    copies = [letter for letter in await list_dead_letters(kafka, TOPIC) if letter.value == poison]
    assert len(copies) == 2
    await replay_dead_letters(kafka, TOPIC)
    back = await read_all(kafka, TOPIC, expect=10_000, timeout_s=3)
    assert sum(r.value == poison for r in back) == 2  # the original and ONE replayed copy
    assert any(r.value == poison and dict(r.headers).get("replayed_from") for r in back)
    # `dlq list` tells the copies apart by group, and knows they are one source message
    assert {letter.consumer_group for letter in copies} == set(groups)
    assert len({letter.source_id for letter in copies}) == 1 and copies[0].source_id is not None


async def test_dlq_replay_that_fails_midway_does_not_resend_what_it_sent(
    kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from libs.cli.dlq import replay_dead_letters

    values = [f"letter {i} {new_id()}".encode() for i in range(3)]
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    for i, value in enumerate(values):
        await raw.send_and_wait(dlq_topic(TOPIC), value, partition=0, headers=[
            ("error_type", b"RuntimeError"), ("error", b"s3 was down"), ("source_topic", TOPIC.encode()),
            ("source_partition", b"0"), ("source_offset", str(10**9 + i).encode()), ("consumer_group", b"face"),
        ])
    await raw.stop()
    send = AIOKafkaProducer.send_and_wait

    async def failing_send(self: AIOKafkaProducer, topic: str, value: bytes | None = None, **kw: object) -> object:
        if value == values[1]:
            raise ConnectionError("broker went away mid-replay")
        return await send(self, topic, value=value, **kw)

    monkeypatch.setattr(AIOKafkaProducer, "send_and_wait", failing_send)
    with pytest.raises(ConnectionError):
        await replay_dead_letters(kafka, TOPIC)
    monkeypatch.setattr(AIOKafkaProducer, "send_and_wait", send)
    await replay_dead_letters(kafka, TOPIC)
    back = await read_all(kafka, TOPIC, expect=10_000, timeout_s=3)
    assert [sum(r.value == value for r in back) for value in values] == [1, 1, 1]
