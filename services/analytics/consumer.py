"""The ingestion chain: consumer group "analytics" over every topic → rows → one insert per batch → forget deleted
photos → commit. ConsumerRunner does validate (in bulk: one pydantic call per poll), batch (size or time), retry,
dead-letter and commit; this module supplies the transform-and-write step (rows encoded as RowBinary, see
ingest_rowbinary) and the privacy step after it (forget). Big polls are validated and encoded in a worker process
(offload.py) and written by the same step."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from libs.common.bus import ConsumerRunner, Delivery, EventPublisher
from libs.common.bus.bulk import gc_paused
from libs.common.events import TOPICS
from libs.common.observability import ServiceMetrics
from libs.common.settings import Settings
from services.analytics.forget import PhotoForgetter, photo_ids_of
from services.analytics.ingest_rowbinary import RowBinaryBlock, build_rowbinary_blocks
from services.analytics.offload import DecodePool, EncodedPoll, OffloadingConsumerRunner
from services.analytics.store import EventStore

log = logging.getLogger(__name__)

CONSUMER_GROUP = "analytics"
INSERT_STAGE = "analytics_insert"
FORGET_STAGE = "analytics_forget"


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


def batch_writer(store: EventStore, metrics: ServiceMetrics | None = None) -> BatchHandler:
    """The batch handler: returns only once every row of the batch is in the store and the detail of every deleted
    photo the batch mentions is gone from it (then the runner commits; a redelivered batch repeats both harmlessly)."""
    forgetter = PhotoForgetter(store)

    async def write_batch(deliveries: list[Delivery]) -> None:
        started = time.perf_counter()
        with gc_paused():  # a burst of allocations that hold no cycles (see gc_paused)
            blocks = build_rowbinary_blocks(deliveries)
        await write_blocks(store, forgetter, metrics, started, blocks, photo_ids_of(deliveries))

    return write_batch


EncodedHandler = Callable[[EncodedPoll], Awaitable[None]]


def encoded_writer(store: EventStore, metrics: ServiceMetrics | None = None) -> EncodedHandler:
    """``batch_writer`` for polls a decode worker already validated and encoded (services/analytics/offload.py)."""
    forgetter = PhotoForgetter(store)

    async def write_encoded(poll: EncodedPoll) -> None:
        await write_blocks(store, forgetter, metrics, time.perf_counter(), poll.blocks, poll.photo_ids)

    return write_encoded


async def write_blocks(
    store: EventStore, forgetter: PhotoForgetter, metrics: ServiceMetrics | None, started: float,
    blocks: list[RowBinaryBlock], photo_ids: list[str],
) -> None:
    """Insert a batch's blocks, then forget the deleted photos among those its rows mention; record the stages."""
    await store.insert_blocks(blocks)
    inserted = time.perf_counter()
    await forgetter.forget_mentioned(photo_ids)
    if metrics is not None:
        metrics.stage_seconds.labels(INSERT_STAGE).observe(inserted - started)
        metrics.stage_seconds.labels(FORGET_STAGE).observe(time.perf_counter() - inserted)
        for block in blocks:
            metrics.events_handled.labels(block.topic).inc(len(block.rows))


def build_consumer(
    settings: Settings, store: EventStore, dlq: EventPublisher, metrics: ServiceMetrics | None = None
) -> ConsumerRunner:
    """One consumer over every topic, batched by the analytics settings (big inserts about once per second); big polls
    are validated and encoded in a worker process when ``decode_workers`` > 0."""
    common: dict[str, Any] = {
        "group_id": CONSUMER_GROUP,
        "topics": list(TOPICS),
        "dlq_publisher": dlq,
        "batch_handler": batch_writer(store, metrics),
        "pipelined": True,  # decode the next batch while chDB/ClickHouse writes this one
        "bulk_decode": True,  # one validation call per poll: ~40 % less CPU than decode_event per record
        "max_records": settings.analytics.batch_size,
        "max_wait_s": settings.analytics.flush_interval_s,
    }
    if settings.analytics.decode_workers == 0:
        return ConsumerRunner(settings.kafka, **common)
    return OffloadingConsumerRunner(
        settings.kafka, **common, pool=DecodePool(settings.analytics.decode_workers),
        write_encoded=encoded_writer(store, metrics), min_records=settings.analytics.offload_min_records,
    )
