"""Dead-lettering when the dead-letter publish itself fails, against real Tansu brokers: the consumer must keep going
past a message too big to dead-letter, and a stop request must not wait on a dead-letter topic that is down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from libs.cli.dlq import DeadLetter, replay_dead_letters
from libs.common.broker import EmbeddedBroker
from libs.common.bus import ConsumerRunner, KafkaEventPublisher, ensure_topics
from libs.common.bus.consumer import DLQ_STOP_GRACE_S
from libs.common.events import Event, PhotoUploaded, dlq_topic
from libs.common.ids import new_id
from libs.common.settings import KafkaSettings
from tests.integration.test_bus import read_all, uploaded

pytestmark = pytest.mark.integration
TOPIC = PhotoUploaded.TOPIC
OVERSIZED = 1_500_000  # above aiokafka's default max_request_size (1 MiB), which the services' producers keep


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
async def kafka(broker: EmbeddedBroker) -> KafkaSettings:
    settings = KafkaSettings(bootstrap=broker.bootstrap, partitions=1, retry_backoff_s=0.05, handler_retries=1,
                             session_timeout_ms=6000, heartbeat_interval_ms=500)
    await ensure_topics(settings)
    return settings


async def test_a_message_too_big_to_dead_letter_does_not_block_the_partition(kafka: KafkaSettings) -> None:
    big = b"\xff" + new_id().encode() * (OVERSIZED // 26)  # undecodable, and bigger than the producer may send
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, max_request_size=4 * OVERSIZED)
    await raw.start()
    try:
        big_offset = (await raw.send_and_wait(TOPIC, big, partition=0)).offset
    finally:
        await raw.stop()
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    good = uploaded()
    await publisher.publish(good)
    seen: list[str] = []

    async def handler(e: Event) -> None:
        seen.append(str(e.event_id))

    runner = ConsumerRunner(kafka, group_id=f"g-{new_id()}", topics=[TOPIC], dlq_publisher=publisher, handler=handler)
    task = asyncio.create_task(runner.run())
    try:
        deadline = asyncio.get_running_loop().time() + 40
        while str(good.event_id) not in seen:
            assert asyncio.get_running_loop().time() < deadline, "the partition is stuck behind the big message"
            assert not task.done(), f"runner died: {task.exception()!r}"
            await asyncio.sleep(0.1)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)
        await publisher.stop()
    letters = [dict(r.headers) for r in await read_all(kafka, dlq_topic(TOPIC), expect=10_000, timeout_s=3)]
    mine = [h for h in letters if h["source_offset"] == str(big_offset).encode() and h["source_partition"] == b"0"]
    assert mine and mine[0]["value_omitted"].startswith(str(len(big)).encode())
    # replaying it would publish an empty message (dead-lettered again as "empty"): it is skipped and named instead
    skipped: list[DeadLetter] = []
    assert await replay_dead_letters(kafka, TOPIC, on_skip=skipped.append) == 0
    assert [(s.source_offset, s.value_omitted[:7]) for s in skipped] == [(big_offset, str(len(big))[:7])]


async def test_stop_does_not_wait_for_a_dead_letter_topic_that_is_down(kafka: KafkaSettings) -> None:
    dlq_broker = EmbeddedBroker().start()
    dlq_publisher = KafkaEventPublisher(KafkaSettings(bootstrap=dlq_broker.bootstrap), "dlq")
    await dlq_publisher.start()
    dlq_broker.stop()  # dead letters cannot be written now; aiokafka waits 40 s per try before failing
    poison = f"not json {new_id()}".encode()
    raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await raw.start()
    await raw.send_and_wait(TOPIC, poison)
    await raw.stop()
    group = f"g-{new_id()}"

    async def handler(_: Event) -> None:
        pass

    runner = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=dlq_publisher, handler=handler)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(12)  # joined the group, polled the poison message, stuck writing its dead letter
        assert not task.done(), f"runner died: {task.exception() if task.done() else ''}"
        assert runner.stats.dead_lettered == 0
        runner.stop()
        await asyncio.wait_for(asyncio.shield(task), DLQ_STOP_GRACE_S + 5)
    finally:
        runner.stop()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await dlq_publisher.stop()
    # nothing was committed past it: the group's next consumer dead-letters it once the topic is back
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    again = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=handler)
    task = asyncio.create_task(again.run())
    try:
        deadline = asyncio.get_running_loop().time() + 40
        while not again.stats.dead_lettered:
            assert asyncio.get_running_loop().time() < deadline, "the poison message was lost"
            assert not task.done(), f"runner died: {task.exception()!r}"
            await asyncio.sleep(0.1)
    finally:
        again.stop()
        await asyncio.wait_for(task, 30)
        await publisher.stop()
    letters = await read_all(kafka, dlq_topic(TOPIC), expect=10_000, timeout_s=3)
    assert any(r.value == poison for r in letters)


async def test_a_stop_during_a_batch_still_dead_letters_and_commits_it(kafka: KafkaSettings) -> None:
    """Stop means: finish the batch in hand (its dead letters included), commit, leave; not abandon it."""
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    first, poison = uploaded(), uploaded()
    await publisher.publish_many([first, poison])  # one partition: one poll, in this order
    group = f"g-{new_id()}"
    runner: ConsumerRunner

    async def handler(e: Event) -> None:
        if e.event_id == first.event_id:
            runner.stop()  # SIGTERM arrives while the batch is being handled
        elif e.event_id == poison.event_id:
            raise RuntimeError("boom: cannot process this photo")

    runner = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=handler,
                            max_records=10_000)  # earlier tests' messages come first, in the same poll
    try:
        await asyncio.wait_for(runner.run(), 60)
        letters = await read_all(kafka, dlq_topic(TOPIC), expect=10_000, timeout_s=3)
        ours = [r for r in letters if dict(r.headers)["consumer_group"] == group.encode()]
        assert any(r.value == poison.to_bytes() for r in ours)
        again: list[str] = []

        async def record(e: Event) -> None:
            again.append(str(e.event_id))

        late = uploaded()
        await publisher.publish(late)
        second = ConsumerRunner(kafka, group_id=group, topics=[TOPIC], dlq_publisher=publisher, handler=record)
        task = asyncio.create_task(second.run())
        deadline = asyncio.get_running_loop().time() + 40
        while str(late.event_id) not in again:
            assert asyncio.get_running_loop().time() < deadline, "the group did not go on"
            assert not task.done(), f"runner died: {task.exception()!r}"
            await asyncio.sleep(0.1)
        second.stop()
        await asyncio.wait_for(task, 30)
        assert str(poison.event_id) not in again and str(first.event_id) not in again  # the batch was committed
    finally:
        await publisher.stop()
