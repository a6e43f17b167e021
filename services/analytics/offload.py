"""Big polls validated and encoded in a worker process: the analytics consumer's Python work, off its event loop.

Why: at tens of thousands of events/s the analytics process spends most of its Python time on one thread (aiokafka's
record parsing, pydantic validation, RowBinary encoding) while chDB's insert runs beside it on the store thread, so
the event loop bounds ingestion (benchmarks/results/ingest_throughput.md). A poll of at least ``min_records`` records
is shipped as (topic, partition, offset, value) to a worker process, which runs the very functions of the in-process
path (``decode_records``'s bulk validation, ``build_rowbinary_blocks``) and sends back the encoded blocks, the photo
ids the forget step needs, and the rejected records' errors. Both paths therefore write identical rows and
dead-letter with identical errors. Small polls stay in process: a round trip is not worth it for a handful of events,
and a service at rest never starts the worker.

Failures: a worker that dies is replaced and its poll decoded in process; a write that still fails after the runner's
retries falls back to the runner's per-event isolation on in-process deliveries, so a poison event is dead-lettered
alone, exactly as without a worker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
from array import array
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

from aiokafka import ConsumerRecord

from libs.common.bus import ConsumerRunner, Delivery
from libs.common.bus.bulk import INGEST_GC_GEN0_THRESHOLD, decode_records, gc_paused
from libs.common.events import InvalidEvent
from services.analytics.forget import photo_ids_of
from services.analytics.ingest_rowbinary import RowBinaryBlock, build_rowbinary_blocks

log = logging.getLogger(__name__)



class RawRecord(NamedTuple):
    """What the worker needs of a Kafka record; ``index`` is its place in the poll."""

    index: int
    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class PackedPoll:
    """A poll as a few flat buffers: pickling 50,000 record tuples cost ~2.2 µs each in the consumer's process (and
    ~2.8 to unpickle), about what the worker saves it; these buffers pickle at memory speed."""

    topics: list[str]
    topic_index: bytes  # array('H'): index into ``topics``, per record
    partitions: bytes  # array('i')
    offsets: bytes  # array('q')
    ends: bytes  # array('q'): end of each record's value in ``values``
    values: bytes  # every value, concatenated (a missing value is empty, as decode_records treats it)

    @classmethod
    def of(cls, records: Sequence[ConsumerRecord[Any, Any]]) -> PackedPoll:
        topics: dict[str, int] = {}
        topic_index = array("H", [topics.setdefault(r.topic, len(topics)) for r in records]).tobytes()
        values = [r.value or b"" for r in records]
        return cls(
            list(topics), topic_index, array("i", [r.partition for r in records]).tobytes(),
            array("q", [r.offset for r in records]).tobytes(), array("q", accumulate(map(len, values))).tobytes(),
            b"".join(values),
        )

    def records(self) -> list[RawRecord]:
        topic_index, partitions, offsets, ends = (
            array(code, buffer) for code, buffer in
            (("H", self.topic_index), ("i", self.partitions), ("q", self.offsets), ("q", self.ends))
        )
        topics, values = self.topics, self.values
        out, start = [], 0
        for i, end in enumerate(ends):
            out.append(RawRecord(i, topics[topic_index[i]], partitions[i], offsets[i], values[start:end]))
            start = end
        return out


@dataclass(frozen=True)
class EncodedPoll:
    """A poll's valid events as RowBinary blocks, with what the write and the runner need besides the rows."""

    blocks: list[RowBinaryBlock]
    photo_ids: list[str]  # distinct photo ids the rows carry: the forget step looks these up
    rejected: list[tuple[int, str]]  # (index in the poll, decode_event's error) of the invalid records
    handled_by_topic: dict[str, int]

    @property
    def handled(self) -> int:
        return sum(self.handled_by_topic.values())


def encode_packed(packed: PackedPoll) -> EncodedPoll:
    """The worker's entry point: unpack, validate and encode one poll."""
    return encode_poll(packed.records())


def encode_poll(records: list[RawRecord]) -> EncodedPoll:
    """Validate and encode one poll (runs in the worker; in-process callers get the same answer)."""
    with gc_paused():
        decoded, rejected = decode_records(records)  # type: ignore[arg-type]  # duck-typed: .topic and .value
        deliveries = [Delivery(event, r.topic, r.partition, r.offset, r.value or b"") for r, event in decoded]
        blocks = build_rowbinary_blocks(deliveries)
    by_topic: dict[str, int] = {}
    for block in blocks:
        by_topic[block.topic] = by_topic.get(block.topic, 0) + len(block.rows)
    return EncodedPoll(blocks, photo_ids_of(deliveries), [(r.index, str(e)) for r, e in rejected], by_topic)


def _init_worker() -> None:
    gc.set_threshold(INGEST_GC_GEN0_THRESHOLD)


class DecodePool:
    """One worker process (spawned, never forked: the parent runs chDB's threads), started on first use."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
            )
        return self._executor

    async def encode(self, records: list[ConsumerRecord[Any, Any]]) -> EncodedPoll:
        packed = PackedPoll.of(records)
        return await asyncio.get_running_loop().run_in_executor(self._pool(), encode_packed, packed)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


@dataclass(frozen=True)
class _Offloaded:
    poll: EncodedPoll
    valid: list[ConsumerRecord[Any, Any]]  # the poll's records less the rejected ones (for the isolation fallback)


class OffloadingConsumerRunner(ConsumerRunner):
    """``ConsumerRunner`` whose big polls are prepared by a ``DecodePool`` and written by ``write_encoded``."""

    def __init__(
        self,
        *args: Any,
        pool: DecodePool,
        write_encoded: Callable[[EncodedPoll], Awaitable[None]],
        min_records: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._decode_pool = pool
        self._write_encoded = write_encoded
        self._min_records = min_records

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self._decode_pool.close()

    async def _prepare(self, records: list[ConsumerRecord[Any, Any]]) -> Any:
        if len(records) < self._min_records:
            return await super()._prepare(records)
        try:
            poll = await self._decode_pool.encode(records)
        except BrokenProcessPool as exc:  # the worker died (killed, out of memory): a new one serves the next poll
            log.warning("decode worker lost; decoding this poll in process", extra={"error": repr(exc)})
            self._decode_pool.close()
            return await super()._prepare(records)
        for index, error in poll.rejected:
            record = records[index]
            await self._dead_letter(
                record.topic, record.partition, record.offset, record.key, record.value, InvalidEvent(error), 0
            )
        rejected = {index for index, _ in poll.rejected}
        return _Offloaded(poll, [r for i, r in enumerate(records) if i not in rejected])

    async def _write_prepared(self, prepared: Any) -> None:
        if not isinstance(prepared, _Offloaded):
            await super()._write_prepared(prepared)
            return
        poll = prepared.poll
        if poll.handled:
            error = await self._retrying(lambda: self._write_encoded(poll))
            if error is not None:
                log.warning("encoded batch failed after retries; isolating messages", extra={"size": poll.handled})
                await self._handle(await self._decode(prepared.valid))
                return
            self.stats.handled += poll.handled
            for topic, n in poll.handled_by_topic.items():
                self.stats.by_topic[topic] = self.stats.by_topic.get(topic, 0) + n
        self.stats.batches += 1
