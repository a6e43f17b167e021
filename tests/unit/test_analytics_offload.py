"""The decode worker (services/analytics/offload.py) writes what the in-process path writes, and fails safe."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from typing import Any

from aiokafka import ConsumerRecord

from libs.common.bus import ConsumerRunner, Delivery, RecordingPublisher
from libs.common.bus.bulk import decode_records
from libs.common.events import InvalidEvent, decode_event, dlq_topic
from libs.common.events.examples import examples
from libs.common.settings import AnalyticsSettings, KafkaSettings, Settings
from services.analytics.consumer import build_consumer
from services.analytics.forget import photo_ids_of
from services.analytics.ingest_rowbinary import build_rowbinary_blocks
from services.analytics.offload import (
    DecodePool,
    EncodedPoll,
    OffloadingConsumerRunner,
    PackedPoll,
    RawRecord,
    encode_poll,
)

KAFKA = KafkaSettings(bootstrap="127.0.0.1:9", handler_retries=0, retry_backoff_s=0.001)
INGESTED_AT_BYTES = 8  # each row ends with ingested_at (DateTime64): the clock of whichever process encoded it


def record(topic: str, offset: int, value: bytes, partition: int = 0) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic, partition, offset, 0, 0, None, value, None, 0, len(value), [])


def poll_with_poison() -> list[ConsumerRecord[Any, Any]]:
    """Every example event on its topic, two of them on a second partition, plus three invalid records."""
    records = [record(e.TOPIC, 10 + i, e.to_bytes(), partition=i % 2) for i, e in enumerate(examples())]
    topic = examples()[0].TOPIC
    records.insert(2, record(topic, 1, b"\xff not json"))
    records.insert(5, record(topic, 2, b'{"type": "photo.uploaded", "photo_id": "short"}'))
    records.append(record("photo.uploaded", 3, examples()[-1].to_bytes()))  # wrong topic for its type
    return records


def raw(records: list[ConsumerRecord[Any, Any]]) -> list[RawRecord]:
    return [RawRecord(i, r.topic, r.partition, r.offset, r.value) for i, r in enumerate(records)]


def test_the_worker_encodes_exactly_what_the_in_process_path_writes() -> None:
    records = poll_with_poison()
    decoded, rejected = decode_records(records)
    deliveries = [Delivery(e, r.topic, r.partition, r.offset, r.value) for r, e in decoded]
    expected = build_rowbinary_blocks(deliveries)

    poll = encode_poll(raw(records))

    assert [(b.topic, b.partition, b.first_offset, b.last_offset, b.dedup_token) for b in poll.blocks] == [
        (b.topic, b.partition, b.first_offset, b.last_offset, b.dedup_token) for b in expected
    ]
    assert [[row[:-INGESTED_AT_BYTES] for row in b.rows] for b in poll.blocks] == [
        [row[:-INGESTED_AT_BYTES] for row in b.rows] for b in expected
    ]
    assert poll.photo_ids == photo_ids_of(deliveries)
    assert poll.handled == len(deliveries) and sum(poll.handled_by_topic.values()) == len(deliveries)
    errors = {}
    for index, r in enumerate(records):
        try:
            decode_event(r.value, r.topic)
        except InvalidEvent as exc:
            errors[index] = str(exc)
    assert dict(poll.rejected) == errors and len(errors) == len(rejected) == 3


def test_a_packed_poll_unpacks_to_the_same_records() -> None:
    records = [*poll_with_poison(), ConsumerRecord("page.viewed", 2, 99, 0, 0, None, None, None, 0, 0, [])]
    unpacked = PackedPoll.of(records).records()
    assert unpacked == [r._replace(value=r.value or b"") for r in raw(records)]


async def test_a_real_worker_process_answers_like_the_function() -> None:
    records = poll_with_poison()
    pool = DecodePool(1)
    try:
        poll = await pool.encode(records)
    finally:
        pool.close()
    local = encode_poll(raw(records))
    assert poll.rejected == local.rejected and poll.photo_ids == local.photo_ids
    assert [[row[:-INGESTED_AT_BYTES] for row in b.rows] for b in poll.blocks] == [
        [row[:-INGESTED_AT_BYTES] for row in b.rows] for b in local.blocks
    ]


def test_the_analytics_consumer_offloads_only_when_asked() -> None:
    class NoStore:
        database = "howhot"

    with_worker = build_consumer(Settings(kafka=KAFKA, analytics=AnalyticsSettings(decode_workers=1)), NoStore(),
                                 RecordingPublisher())  # type: ignore[arg-type]
    in_process = build_consumer(Settings(kafka=KAFKA, analytics=AnalyticsSettings(decode_workers=0)), NoStore(),
                                RecordingPublisher())  # type: ignore[arg-type]
    assert isinstance(with_worker, OffloadingConsumerRunner)
    assert type(in_process) is ConsumerRunner


class Recorder:
    def __init__(self, fail_encoded: bool = False) -> None:
        self.fail_encoded = fail_encoded
        self.encoded: list[EncodedPoll] = []
        self.batches: list[list[Delivery]] = []

    async def write_encoded(self, poll: EncodedPoll) -> None:
        if self.fail_encoded:
            raise RuntimeError("store refused the batch")
        self.encoded.append(poll)

    async def write_batch(self, deliveries: list[Delivery]) -> None:
        self.batches.append(deliveries)


class InlinePool(DecodePool):
    """Runs the worker's function in this process (the process hop itself is tested above)."""

    def __init__(self, broken: bool = False) -> None:
        super().__init__(1)
        self.broken = broken

    async def encode(self, records: list[ConsumerRecord[Any, Any]]) -> EncodedPoll:
        if self.broken:
            raise BrokenProcessPool("worker killed")
        return encode_poll(raw(records))


def runner(recorder: Recorder, pool: DecodePool, dlq: RecordingPublisher, min_records: int = 1) -> Any:
    return OffloadingConsumerRunner(
        KAFKA, group_id="g", topics=["t"], dlq_publisher=dlq, batch_handler=recorder.write_batch,
        bulk_decode=True, pool=pool, write_encoded=recorder.write_encoded, min_records=min_records,
    )


async def test_invalid_records_are_dead_lettered_and_the_rest_written_encoded() -> None:
    recorder, dlq = Recorder(), RecordingPublisher()
    run = runner(recorder, InlinePool(), dlq)
    await run._process(poll_with_poison())
    assert len(recorder.encoded) == 1 and not recorder.batches
    assert run.stats.handled == len(examples()) and run.stats.dead_lettered == 3
    assert {topic for topic, *_ in dlq.raw} == {dlq_topic("photo.uploaded"), dlq_topic(examples()[0].TOPIC)}


async def test_small_polls_stay_in_process() -> None:
    recorder = Recorder()
    await runner(recorder, InlinePool(broken=True), RecordingPublisher(), min_records=1_000)._process(
        poll_with_poison())
    assert not recorder.encoded and len(recorder.batches) == 1


async def test_a_lost_worker_means_decoding_in_process() -> None:
    recorder, dlq = Recorder(), RecordingPublisher()
    run = runner(recorder, InlinePool(broken=True), dlq)
    await run._process(poll_with_poison())
    assert not recorder.encoded and len(recorder.batches[0]) == len(examples())
    assert run.stats.dead_lettered == 3


async def test_a_failing_encoded_write_falls_back_to_per_event_isolation() -> None:
    recorder, dlq = Recorder(fail_encoded=True), RecordingPublisher()
    run = runner(recorder, InlinePool(), dlq)
    await run._process(poll_with_poison())
    assert [len(b) for b in recorder.batches] == [len(examples())]  # the whole valid rest, in process
    assert run.stats.handled == len(examples()) and run.stats.dead_lettered == 3  # only the invalid ones
