"""The consumer loop every service uses: validate → handle → commit, with retries and a dead-letter topic.

Follows the snuba/arroyo chain. Three kinds of failure:
- invalid message (undecodable, schema-invalid, wrong topic): straight to ``<topic>.dlq``, never retried;
- handler error: bounded retries with exponential backoff, then ``<topic>.dlq`` with the error, and the loop goes on;
- stop requested (SIGTERM/SIGINT): the batch in hand finishes and is committed, then the consumer leaves the group.
Offsets are committed only after every message of the batch was handled or dead-lettered: at-least-once delivery,
so handlers must be idempotent. Small batches per poll keep a slow handler inside max_poll_interval (aiokafka #848).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)

from libs.common.bus.bulk import decode_records, gc_paused
from libs.common.bus.kafka import client_kwargs, start_with_retry, unless_stopped
from libs.common.bus.producer import EventPublisher
from libs.common.errors import TransientError
from libs.common.events import Event, InvalidEvent, decode_event, dlq_topic
from libs.common.settings import KafkaSettings

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500  # how long one poll blocks: bounds the reaction time to a stop request
PIPELINE_DEPTH = 2  # pipelined mode: batches in flight (one being written, one being prepared)
MAX_BACKOFF_S = 10.0
DLQ_STOP_GRACE_S = 5.0  # after stop(): how long an in-flight dead letter may still take (a healthy broker acks in ms)


def _transient(exc: BaseException) -> bool:
    """A TransientError, or a Kafka error from the handler's own publish that means the broker is down or busy
    (aiokafka's retriable errors and its delivery timeout): a healthy photo must not be dead-lettered because the
    broker blinked for longer than the bounded retries last. Other Kafka errors (a record too large) stay bugs."""
    if isinstance(exc, TransientError):
        return True
    return isinstance(exc, KafkaError) and (exc.retriable or isinstance(exc, KafkaTimeoutError))


class _StopWhileWaiting(Exception):
    """Raised inside the loop when stop() arrives while a transient outage is being waited out."""


class Delivery(NamedTuple):
    """One validated event with where it came from (analytics stores topic/partition/offset with each row).

    A NamedTuple, not a frozen dataclass: analytics builds tens of thousands per second, and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field) costs ~0.8 µs more per event."""

    event: Event
    topic: str
    partition: int
    offset: int
    raw: bytes


EventHandler = Callable[[Event], Awaitable[None]]
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


@dataclass
class ConsumerStats:
    """Counters exported on /metrics."""

    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    last_commit_at: float = 0.0
    by_topic: dict[str, int] = field(default_factory=dict)


class ConsumerRunner:
    """Runs a consumer group over ``topics`` with either a per-event ``handler`` or a ``batch_handler``."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: list[str],
        dlq_publisher: EventPublisher,
        handler: EventHandler | None = None,
        batch_handler: BatchHandler | None = None,
        max_records: int | None = None,
        max_wait_s: float = 0.0,
        concurrency: int = 1,
        pipelined: bool = False,
        bulk_decode: bool = False,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler or batch_handler")
        self._settings = settings
        self._group_id = group_id
        self._topics = topics
        self._dlq = dlq_publisher
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_records = max_records or settings.max_poll_records
        self._max_wait_s = max_wait_s
        self._concurrency = max(1, concurrency)
        self._pipelined = pipelined  # poll and decode batch N+1 while batch N is being written; commits stay in order
        self._bulk_decode = bulk_decode  # validate a poll in one pydantic call (libs.common.bus.bulk): same verdicts
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self.stats = ConsumerStats()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit it and leave the group."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def lag(self) -> int:
        """Messages not yet consumed on this consumer's assigned partitions (admission control reads it)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        partitions = list(consumer.assignment())
        if not partitions:
            return 0
        ends = await consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            try:
                position = await consumer.position(tp)
            except KafkaError:
                continue
            total += max(0, ends.get(tp, 0) - position)
        return total

    async def run(self) -> None:
        """Consume until ``stop()``; never lets one bad message or handler error end the loop."""
        consumer = AIOKafkaConsumer(
            *self._topics,
            **client_kwargs(self._settings),
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=self._settings.max_poll_interval_ms,
            session_timeout_ms=self._settings.session_timeout_ms,
            heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
        )
        try:
            started = await start_with_retry(consumer, f"consumer:{self._group_id}", stop=self._stopping)
        except BaseException:
            await consumer.stop()  # a half-started client holds connections and a metadata task
            raise
        if not started:
            await consumer.stop()
            return
        self._consumer = consumer
        log.info("consumer started", extra={"group": self._group_id, "topics": self._topics})
        try:
            if self._pipelined:
                await self._run_pipelined(consumer)
            while not self._stopping.is_set():
                records = await self._poll(consumer)
                if records:
                    try:
                        await self._process(records)
                    except _StopWhileWaiting:
                        break  # a backend is down and we were asked to stop: leave uncommitted, redelivered later
                    await self._commit(consumer, records)
        finally:
            self._consumer = None
            await consumer.stop()
            log.info("consumer stopped", extra={"group": self._group_id, "handled": self.stats.handled})

    async def _run_pipelined(self, consumer: AIOKafkaConsumer) -> None:
        """Overlap three stages: polling batch N+2 (network, aiokafka's parsing), preparing N+1 (decoding, on this
        loop or in a worker process) and writing N (a thread, e.g. chDB).

        Each batch is a chain (prepare → wait for the previous chain → write → commit), so writes and commits happen
        one at a time and in poll order, exactly as in the sequential loop: at-least-once holds, and a chain whose
        predecessor failed never writes or commits. At most ``PIPELINE_DEPTH`` chains are in flight.
        """
        chains: deque[asyncio.Task[None]] = deque()
        try:
            while not self._stopping.is_set():
                records = await self._poll(consumer)
                while chains and chains[0].done():
                    await chains.popleft()  # re-raises a failed chain's error here
                if not records:
                    continue
                if len(chains) >= PIPELINE_DEPTH:
                    await chains.popleft()
                chains.append(asyncio.create_task(self._chain(consumer, records, chains[-1] if chains else None)))
            while chains:
                await chains.popleft()
        except _StopWhileWaiting:
            return  # a backend is down and we were asked to stop: those batches stay uncommitted, redelivered later
        finally:
            for chain in chains:
                chain.cancel()
            await asyncio.gather(*chains, return_exceptions=True)

    async def _chain(
        self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord], previous: asyncio.Task[None] | None
    ) -> None:
        prepared = await self._prepare(records)
        if previous is not None:
            await asyncio.shield(previous)  # its failure is ours: never write or commit past an unwritten batch
        await self._write_prepared(prepared)
        await self._commit(consumer, records)

    async def _poll(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord]:
        """One poll, then more polls until the batch is full or ``max_wait_s`` has passed (size-or-time batching)."""
        got = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_records)
        records = [r for batch in got.values() for r in batch]
        if not records or self._max_wait_s <= 0:
            return records
        deadline = time.monotonic() + self._max_wait_s
        while len(records) < self._max_records and not self._stopping.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            more = await consumer.getmany(timeout_ms=remaining_ms, max_records=self._max_records - len(records))
            records.extend(r for batch in more.values() for r in batch)
        return records

    async def _process(self, records: list[ConsumerRecord]) -> None:
        await self._write_prepared(await self._prepare(records))

    async def _prepare(self, records: list[ConsumerRecord]) -> Any:
        """The step before the write: decode (dead-lettering invalid records). A subclass may prepare otherwise (the
        analytics consumer decodes and encodes big polls in a worker process) and then writes in ``_write_prepared``."""
        return await self._decode(records)

    async def _write_prepared(self, prepared: Any) -> None:
        await self._handle(prepared)

    async def _decode(self, records: list[ConsumerRecord]) -> list[Delivery]:
        """Validate every record; invalid ones go to the dead-letter topic right away."""
        if self._bulk_decode:
            return await self._decode_bulk(records)
        deliveries: list[Delivery] = []
        for record in records:
            try:
                event = decode_event(record.value, record.topic)
            except InvalidEvent as exc:
                await self._dead_letter(record.topic, record.partition, record.offset, record.key, record.value, exc, 0)
                continue
            deliveries.append(Delivery(event, record.topic, record.partition, record.offset, record.value or b""))
        return deliveries

    async def _decode_bulk(self, records: list[ConsumerRecord]) -> list[Delivery]:
        """``_decode`` with one validation call per poll; the verdicts and dead letters are the same."""
        with gc_paused():
            decoded, rejected = decode_records(records)
            deliveries = [Delivery(event, r.topic, r.partition, r.offset, r.value) for r, event in decoded]
        for record, error in rejected:
            await self._dead_letter(record.topic, record.partition, record.offset, record.key, record.value, error, 0)
        return deliveries

    async def _handle(self, deliveries: list[Delivery]) -> None:
        if self._batch_handler is not None and deliveries:
            await self._handle_batch(deliveries)
        elif self._handler is not None:
            await self._handle_concurrently(deliveries)
        self.stats.batches += 1

    async def _handle_concurrently(self, deliveries: list[Delivery]) -> None:
        """Handle a poll's events with up to ``concurrency`` in flight, so handlers can micro-batch model work across
        messages; events sharing a key (one photo) stay strictly in order."""
        if self._concurrency == 1:
            for delivery in deliveries:
                await self._handle_one(delivery)
            return
        by_key: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            key = delivery.event.partition_key or f"{delivery.partition}:{delivery.offset}"
            by_key.setdefault(key, []).append(delivery)
        slots = asyncio.Semaphore(self._concurrency)

        async def run_chain(chain: list[Delivery]) -> None:
            async with slots:
                for delivery in chain:
                    await self._handle_one(delivery)

        await asyncio.gather(*(run_chain(chain) for chain in by_key.values()))

    async def _handle_batch(self, deliveries: list[Delivery]) -> None:
        assert self._batch_handler is not None
        error = await self._retrying(lambda: self._batch_handler(deliveries))  # type: ignore[misc]
        if error is None:
            self._count(deliveries)
            return
        log.warning("batch failed after retries; isolating messages", extra={"size": len(deliveries)})
        for delivery in deliveries:  # find the poison message(s); the rest still get written
            single_error = await self._retrying(lambda d=delivery: self._batch_handler([d]))  # type: ignore[misc]
            if single_error is None:
                self._count([delivery])
            else:
                await self._dead_letter_delivery(delivery, single_error)

    async def _handle_one(self, delivery: Delivery) -> None:
        assert self._handler is not None
        error = await self._retrying(lambda: self._handler(delivery.event))  # type: ignore[misc]
        if error is None:
            self._count([delivery])
        else:
            await self._dead_letter_delivery(delivery, error)

    async def _retrying(self, attempt: Callable[[], Awaitable[None]]) -> BaseException | None:
        """Run ``attempt`` up to 1 + handler_retries times with exponential backoff; return the last error or None."""
        delay = self._settings.retry_backoff_s
        last: BaseException | None = None
        n = 0
        while n < 1 + self._settings.handler_retries:
            try:
                await attempt()
                return None
            except InvalidEvent as exc:  # the handler found the event unusable: retrying will not help
                return exc
            except Exception as exc:  # noqa: BLE001 - any handler error is retried, then dead-lettered
                if _transient(exc):  # a backend is down: wait for it, without limit, never dead-letter
                    self.stats.retries += 1
                    log.warning("backend unavailable, waiting", extra={"group": self._group_id, "error": repr(exc)})
                    try:
                        await asyncio.wait_for(self._stopping.wait(), delay)
                        raise _StopWhileWaiting from exc
                    except TimeoutError:
                        pass
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                last = exc
                log.warning("handler failed", extra={"group": self._group_id, "attempt": n + 1, "error": repr(exc)})
                if n < self._settings.handler_retries:
                    self.stats.retries += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                n += 1
        return last

    def _count(self, deliveries: list[Delivery]) -> None:
        self.stats.handled += len(deliveries)
        for d in deliveries:
            self.stats.by_topic[d.topic] = self.stats.by_topic.get(d.topic, 0) + 1

    async def _dead_letter_delivery(self, delivery: Delivery, error: BaseException) -> None:
        key = delivery.event.partition_key
        await self._dead_letter(
            delivery.topic, delivery.partition, delivery.offset, key.encode() if key else None, delivery.raw, error,
            1 + self._settings.handler_retries,
        )

    async def _unless_stopped(
        self, work: Awaitable[None], cause: BaseException | None = None, grace_s: float = 0.0
    ) -> None:
        """Await ``work`` unless ``stop()`` comes first and ``work`` does not finish ``grace_s`` later: then raise
        ``_StopWhileWaiting`` (the batch stays uncommitted and is redelivered), so a dead-letter topic that is down or
        hangs never holds up shutdown, while a healthy one still gets the batch in hand finished."""
        if not await unless_stopped(work, self._stopping, grace_s):
            raise _StopWhileWaiting from cause

    async def _dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: BaseException,
        attempts: int,
    ) -> None:
        """Publish the original bytes with the error to ``<topic>.dlq``; retried until the broker takes it."""
        headers = [
            ("error", str(error)[:2000].encode()),
            ("error_type", type(error).__name__.encode()),
            ("source_topic", topic.encode()),
            ("source_partition", str(partition).encode()),
            ("source_offset", str(offset).encode()),
            ("consumer_group", self._group_id.encode()),
            ("attempts", str(attempts).encode()),
            ("failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        delay = self._settings.retry_backoff_s
        while True:
            try:
                await self._unless_stopped(
                    self._dlq.publish_raw(dlq_topic(topic), value or b"", key, headers), grace_s=DLQ_STOP_GRACE_S
                )
                break
            except _StopWhileWaiting:
                raise
            except Exception as exc:  # noqa: BLE001 - never drop a message: wait for the broker, don't commit past it
                if isinstance(exc, MessageSizeTooLargeError) and (value or key):
                    # bigger than this producer may send: retrying would block the partition forever. The dead
                    # letter goes without the bytes; the original stays at source_topic/partition/offset.
                    log.error("dead letter too large; sending it without its value", extra={"error": repr(exc)})
                    omitted = f"{len(value or b'')} bytes, key {len(key or b'')} bytes"
                    headers.append(("value_omitted", omitted.encode()))
                    value, key = None, None
                    continue
                log.error("dead-letter publish failed, retrying", extra={"error": repr(exc)})
                await self._unless_stopped(asyncio.sleep(delay), exc)
                delay = min(delay * 2, MAX_BACKOFF_S)
        self.stats.dead_lettered += 1
        log.error(
            "message dead-lettered",
            extra={"topic": topic, "partition": partition, "offset": offset, "error": str(error)[:500]},
        )

    async def _commit(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord]) -> None:
        """Commit the batch's offsets for the partitions this consumer still owns.

        A rebalance while the batch was handled may have moved some of its partitions to another member: their
        offsets are skipped (the new owner re-processes from the last commit: at-least-once), and a commit refused
        because the group moved on is logged, never raised — a failed commit only means redelivery, while an
        exception here would end the loop for good.
        """
        latest: dict[tuple[str, int], int] = {}  # plain tuples: one TopicPartition per partition, not per record
        for record in records:
            key = (record.topic, record.partition)
            if record.offset >= latest.get(key, -1):
                latest[key] = record.offset
        assigned = consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        revoked: list[str] = []
        for (topic, partition), offset in latest.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                offsets[tp] = offset + 1
            else:
                revoked.append(f"{topic}[{partition}]")
        if revoked:
            log.warning(
                "partitions revoked during the batch; not committing them, the new owner re-processes",
                extra={"group": self._group_id, "partitions": revoked},
            )
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self.stats.last_commit_at = time.time()
        except (CommitFailedError, IllegalStateError) as exc:  # partitions moved during a rebalance
            log.warning(
                "commit failed after rebalance; messages will be redelivered",
                extra={"group": self._group_id, "error": repr(exc)},
            )
        except KafkaError as exc:  # any other refused commit: redelivery too, and the loop must go on
            log.error(
                "commit failed; messages will be redelivered", extra={"group": self._group_id, "error": repr(exc)}
            )
