"""The ingestion chain: consumer group "analytics" over every topic → rows → one insert per batch → forget deleted
photos → commit. ConsumerRunner does validate (in bulk: one pydantic call per poll), batch (size or time), retry,
dead-letter and commit; this module supplies the transform-and-write step (rows encoded as RowBinary, see
ingest_rowbinary) and the privacy step after it (forget)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from libs.common.bus import ConsumerRunner, Delivery, EventPublisher
from libs.common.bus.bulk import gc_paused
from libs.common.events import TOPICS
from libs.common.observability import ServiceMetrics
from libs.common.settings import Settings
from services.analytics.forget import PhotoForgetter
from services.analytics.ingest_rowbinary import build_rowbinary_blocks
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
        await store.insert_blocks(blocks)
        inserted = time.perf_counter()
        await forgetter.after_insert(deliveries)
        if metrics is not None:
            metrics.stage_seconds.labels(INSERT_STAGE).observe(inserted - started)
            metrics.stage_seconds.labels(FORGET_STAGE).observe(time.perf_counter() - inserted)
            for block in blocks:
                metrics.events_handled.labels(block.topic).inc(len(block.rows))

    return write_batch


def build_consumer(
    settings: Settings, store: EventStore, dlq: EventPublisher, metrics: ServiceMetrics | None = None
) -> ConsumerRunner:
    """One consumer over every topic, batched by the analytics settings (big inserts about once per second)."""
    return ConsumerRunner(
        settings.kafka,
        group_id=CONSUMER_GROUP,
        topics=list(TOPICS),
        dlq_publisher=dlq,
        batch_handler=batch_writer(store, metrics),
        pipelined=True,  # decode the next batch while chDB/ClickHouse writes this one
        bulk_decode=True,  # one validation call per poll: ~40 % less CPU than decode_event per record
        max_records=settings.analytics.batch_size,
        max_wait_s=settings.analytics.flush_interval_s,
    )
