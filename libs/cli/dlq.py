"""``howhot dlq``: inspect and replay dead-lettered messages.

``list`` prints what sits in every ``<topic>.dlq`` (error, source offset, consumer group, when). ``replay`` publishes
the original bytes back onto their source topic — after a fix, or once a backend that was down is back — and records
how far it got in a consumer group of its own, committed as it goes, so replaying twice (or again after a failed run)
does not duplicate (handlers are idempotent anyway).

Every topic is read by several consumer groups, and each group dead-letters a message it cannot handle into the same
``<topic>.dlq``: one poison message leaves one dead letter per group. A replay publishes each source message (source
topic, partition, offset) once; republishing every copy would have every group dead-letter every copy again, doubling
the DLQ on each replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from libs.common.bus.kafka import client_kwargs, start_with_retry
from libs.common.events import TOPICS, dlq_topic
from libs.common.settings import KafkaSettings

REPLAY_GROUP = "howhot-dlq-replay"
REPLAY_COMMIT_EVERY = 100  # dead letters replayed between two commits of the replay group's progress
LIST_POLL_MS = 1500  # an empty DLQ answers within this
READER_START_DEADLINE_S = 30  # an operator's command should fail, not wait forever for a broker that is down


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
    source_partition: int | None = None
    source_offset: int | None = None
    consumer_group: str = ""
    value_omitted: str = ""  # the message was too big to dead-letter: its bytes stay only at the source offset

    @property
    def source_id(self) -> tuple[str, int, int] | None:
        """Where the original message sits (topic, partition, offset): the same for every group's copy; None if the
        dead letter does not say (written by hand or by an older consumer)."""
        if self.source_partition is None or self.source_offset is None:
            return None
        return self.source_topic, self.source_partition, self.source_offset

    def summary(self) -> dict[str, object]:
        at = f"[{self.source_partition}]@{self.source_offset}" if self.source_id else ""
        return {
            "dlq": f"{self.dlq_topic}[{self.partition}]@{self.offset}", "source": self.source_topic,
            "source_message": f"{self.source_topic}{at}" if at else None, "group": self.consumer_group or None,
            "error_type": self.error_type, "error": self.error[:300], "failed_at": self.failed_at,
            "bytes": len(self.value), **({"value_omitted": self.value_omitted} if self.value_omitted else {}),
        }


async def _read(settings: KafkaSettings, topics: list[str], group: str | None) -> tuple[AIOKafkaConsumer, list]:
    consumer = AIOKafkaConsumer(
        *topics, **client_kwargs(settings), group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    records = []
    try:
        await start_with_retry(consumer, "dlq-reader", deadline_s=READER_START_DEADLINE_S)
        while True:
            got = await consumer.getmany(timeout_ms=LIST_POLL_MS, max_records=1000)
            if not got:
                break
            records.extend(r for batch in got.values() for r in batch)
    except BaseException:
        await consumer.stop()  # a broker that never answered must not leave an unclosed client behind
        raise
    return consumer, records


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _to_dead_letter(record: ConsumerRecord) -> DeadLetter:
    """The headers are those ``ConsumerRunner._dead_letter`` writes."""
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return DeadLetter(
        dlq_topic=record.topic, partition=record.partition, offset=record.offset,
        source_topic=headers.get("source_topic", record.topic.removesuffix(".dlq")),
        error_type=headers.get("error_type", "?"), error=headers.get("error", ""),
        failed_at=headers.get("failed_at", ""), value=record.value or b"", key=record.key,
        source_partition=_int_header(headers.get("source_partition")),
        source_offset=_int_header(headers.get("source_offset")),
        consumer_group=headers.get("consumer_group", ""), value_omitted=headers.get("value_omitted", ""),
    )


async def list_dead_letters(settings: KafkaSettings, topic: str | None = None) -> list[DeadLetter]:
    """Every message currently in the dead-letter topics (or one topic's), oldest first."""
    topics = [dlq_topic(topic)] if topic else [dlq_topic(t) for t in TOPICS]
    consumer, records = await _read(settings, topics, group=None)
    await consumer.stop()
    return [_to_dead_letter(r) for r in records]


async def replay_dead_letters(
    settings: KafkaSettings, topic: str | None = None, on_skip: Callable[[DeadLetter], None] | None = None
) -> int:
    """Publish not-yet-replayed dead letters back to their source topics, each source message once (however many
    groups dead-lettered it); returns how many messages were published. A dead letter written without its bytes
    (``value_omitted``: too big to dead-letter) is not replayed, which would publish an empty message: ``on_skip``
    hears of it, and the original stays at its source offset.

    Progress is committed as the replay goes (every ``REPLAY_COMMIT_EVERY`` dead letters, and up to the last one
    sent if a send fails), so a failed run re-sends at most what it had not committed.
    """
    topics = [dlq_topic(topic)] if topic else [dlq_topic(t) for t in TOPICS]
    consumer, records = await _read(settings, topics, group=REPLAY_GROUP)
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    done: dict[TopicPartition, int] = {}  # next DLQ offset per partition: every dead letter before it is replayed
    committed: dict[TopicPartition, int] = {}
    sent: set[tuple[str, int, int]] = set()
    published = 0

    async def commit() -> None:
        pending = {tp: offset for tp, offset in done.items() if committed.get(tp) != offset}
        if pending:
            await consumer.commit(pending)
            committed.update(pending)

    try:
        await start_with_retry(producer, "dlq-replayer", deadline_s=30)
        for n, record in enumerate(records, 1):
            letter = _to_dead_letter(record)
            source = letter.source_id
            if letter.value_omitted:
                if on_skip is not None:
                    on_skip(letter)
            elif source is None or source not in sent:  # another group's copy of a message already sent: skip it
                await producer.send_and_wait(letter.source_topic, value=letter.value, key=letter.key,
                                             headers=[("replayed_from", f"{record.topic}@{record.offset}".encode())])
                published += 1
                if source is not None:
                    sent.add(source)
            tp = TopicPartition(record.topic, record.partition)
            done[tp] = max(done.get(tp, 0), record.offset + 1)
            if n % REPLAY_COMMIT_EVERY == 0:
                await commit()
        await commit()
    except BaseException:
        with contextlib.suppress(Exception):  # keep what was sent from being sent again; the error is what matters
            await commit()
        raise
    finally:
        await producer.stop()
        await consumer.stop()
    return published


def run_dlq(command: str, settings: KafkaSettings, topic: str | None, as_json: bool) -> int:
    if command == "list":
        letters = asyncio.run(list_dead_letters(settings, topic))
        if as_json:
            print(json.dumps([letter.summary() for letter in letters], indent=2))
        else:
            for letter in letters:
                s = letter.summary()
                print(f"{s['dlq']:<32} {letter.consumer_group or '?':<12} {s['error_type']:<22} "
                      f"{s['failed_at'][:19]}  {s['error']}")
            messages = len({letter.source_id or (letter.dlq_topic, letter.partition, letter.offset)
                            for letter in letters})
            print(f"{len(letters)} dead-lettered message(s)"
                  + (f" ({messages} distinct source messages)" if messages != len(letters) else ""))
        return 0
    def skipped(letter: DeadLetter) -> None:
        print(f"not replayed: {letter.summary()['source_message'] or letter.source_topic} was too big to "
              f"dead-letter ({letter.value_omitted}); it is still at that offset of the source topic")

    replayed = asyncio.run(replay_dead_letters(settings, topic, on_skip=skipped))
    print(f"{replayed} message(s) replayed onto their source topics")
    return 0
