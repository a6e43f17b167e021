"""The ingestion chain: consumer group "analytics" over every topic → rows → one insert per (topic, partition) →
commit. ConsumerRunner does validate (decode_event), batch (size or time), retry, dead-letter and commit; this module
supplies the transform-and-write step."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from libs.common.bus import ConsumerRunner, Delivery, EventPublisher
from libs.common.events import TOPICS
from libs.common.observability import ServiceMetrics
from libs.common.settings import Settings
from services.analytics.ingest import build_blocks
from services.analytics.store import EventStore

log = logging.getLogger(__name__)

CONSUMER_GROUP = "analytics"
INSERT_STAGE = "analytics_insert"


BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


def batch_writer(store: EventStore, metrics: ServiceMetrics | None = None) -> BatchHandler:
    """The batch handler: returns only once every row of the batch is in the store (then the runner commits)."""

    async def write_batch(deliveries: list[Delivery]) -> None:
        started = time.perf_counter()
        blocks = build_blocks(deliveries)
        await store.insert_blocks(blocks)
        if metrics is not None:
            metrics.stage_seconds.labels(INSERT_STAGE).observe(time.perf_counter() - started)
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
        max_records=settings.analytics.batch_size,
        max_wait_s=settings.analytics.flush_interval_s,
    )
