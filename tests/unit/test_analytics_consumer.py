"""The analytics consumer wiring: every topic, the analytics batch settings, one insert per (topic, partition)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libs.common.bus import Delivery, RecordingPublisher
from libs.common.events import TOPICS
from libs.common.events.examples import examples
from libs.common.observability import ServiceMetrics
from libs.common.settings import AnalyticsSettings, KafkaSettings, Settings
from services.analytics.consumer import CONSUMER_GROUP, batch_writer, build_consumer
from services.analytics.ingest import InsertBlock
from services.analytics.store import QueryResult


class RecordingStore:
    database = "howhot"

    def __init__(self) -> None:
        self.inserts: list[list[InsertBlock]] = []

    async def insert_blocks(self, blocks: Sequence[InsertBlock]) -> None:
        self.inserts.append(list(blocks))

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult:
        return QueryResult([], [])

    async def ping(self) -> bool:
        return True


def test_consumer_reads_every_topic_with_the_analytics_batching() -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap="127.0.0.1:9092"),
        analytics=AnalyticsSettings(batch_size=1234, flush_interval_s=0.5),
    )
    runner = build_consumer(settings, RecordingStore(), RecordingPublisher())
    assert runner._group_id == CONSUMER_GROUP
    assert runner._topics == list(TOPICS)
    assert (runner._max_records, runner._max_wait_s) == (1234, 0.5)


async def test_batch_writer_inserts_one_block_per_topic_partition_and_counts() -> None:
    store, metrics = RecordingStore(), ServiceMetrics("analytics")
    events = examples()
    deliveries = [Delivery(e, e.TOPIC, i % 2, i, e.to_bytes()) for i, e in enumerate(events + events)]
    await batch_writer(store, metrics)(deliveries)
    (blocks,) = store.inserts
    assert sum(len(b.rows) for b in blocks) == len(deliveries)
    assert len({(b.topic, b.partition) for b in blocks}) == len(blocks)
    handled = metrics.events_handled.labels("photo.uploaded")._value.get()
    assert handled == 2
