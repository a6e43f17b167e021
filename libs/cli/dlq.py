"""``howhot dlq``: inspect and replay dead-lettered messages.

``list`` prints what sits in every ``<topic>.dlq`` (error, source offset, when). ``replay`` publishes the original
bytes back onto their source topic — after a fix, or once a backend that was down is back — and records how far it
got in a consumer group of its own, so replaying twice does not duplicate (handlers are idempotent anyway).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from libs.common.bus.kafka import client_kwargs, start_with_retry
from libs.common.events import TOPICS, dlq_topic
from libs.common.settings import KafkaSettings

REPLAY_GROUP = "howhot-dlq-replay"
LIST_POLL_MS = 1500  # an empty DLQ answers within this


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message and why it failed."""

    dlq_topic: str
    partition: int
    offset: int
    source_topic: str
    error_type: str
    error: str
    failed_at: str
    value: bytes
    key: bytes | None

    def summary(self) -> dict[str, object]:
        return {
            "dlq": f"{self.dlq_topic}[{self.partition}]@{self.offset}", "source": self.source_topic,
            "error_type": self.error_type, "error": self.error[:300], "failed_at": self.failed_at,
            "bytes": len(self.value),
        }


async def _read(settings: KafkaSettings, topics: list[str], group: str | None) -> tuple[AIOKafkaConsumer, list]:
    consumer = AIOKafkaConsumer(
        *topics, **client_kwargs(settings), group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_with_retry(consumer, "dlq-reader", deadline_s=30)
    records = []
    while True:
        got = await consumer.getmany(timeout_ms=LIST_POLL_MS, max_records=1000)
        if not got:
            break
        records.extend(r for batch in got.values() for r in batch)
    return consumer, records


def _to_dead_letter(record: ConsumerRecord) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return DeadLetter(
        dlq_topic=record.topic, partition=record.partition, offset=record.offset,
        source_topic=headers.get("source_topic", record.topic.removesuffix(".dlq")),
        error_type=headers.get("error_type", "?"), error=headers.get("error", ""),
        failed_at=headers.get("failed_at", ""), value=record.value or b"", key=record.key,
    )


async def list_dead_letters(settings: KafkaSettings, topic: str | None = None) -> list[DeadLetter]:
    """Every message currently in the dead-letter topics (or one topic's), oldest first."""
    topics = [dlq_topic(topic)] if topic else [dlq_topic(t) for t in TOPICS]
    consumer, records = await _read(settings, topics, group=None)
    await consumer.stop()
    return [_to_dead_letter(r) for r in records]


async def replay_dead_letters(settings: KafkaSettings, topic: str | None = None) -> int:
    """Publish not-yet-replayed dead letters back to their source topics; returns how many were replayed."""
    topics = [dlq_topic(topic)] if topic else [dlq_topic(t) for t in TOPICS]
    consumer, records = await _read(settings, topics, group=REPLAY_GROUP)
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    await start_with_retry(producer, "dlq-replayer", deadline_s=30)
    try:
        for record in records:
            letter = _to_dead_letter(record)
            await producer.send_and_wait(letter.source_topic, value=letter.value, key=letter.key,
                                         headers=[("replayed_from", f"{record.topic}@{record.offset}".encode())])
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if offsets:
            await consumer.commit(offsets)
    finally:
        await producer.stop()
        await consumer.stop()
    return len(records)


def run_dlq(command: str, settings: KafkaSettings, topic: str | None, as_json: bool) -> int:
    if command == "list":
        letters = asyncio.run(list_dead_letters(settings, topic))
        if as_json:
            print(json.dumps([letter.summary() for letter in letters], indent=2))
        else:
            for letter in letters:
                s = letter.summary()
                print(f"{s['dlq']:<32} {s['error_type']:<22} {s['failed_at'][:19]}  {s['error']}")
            print(f"{len(letters)} dead-lettered message(s)")
        return 0
    replayed = asyncio.run(replay_dead_letters(settings, topic))
    print(f"{replayed} message(s) replayed onto their source topics")
    return 0
