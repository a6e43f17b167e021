"""The RowBinary fast path on real chDB: the same rows (and views) as the tuple path, and batch-token deduplication."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from libs.common.bus import Delivery
from libs.common.events import Event, PageViewed, decode_event
from libs.common.events.examples import VISITOR, examples
from libs.common.settings import ClickHouseSettings, CoreSettings, Settings
from services.analytics.ingest import build_blocks
from services.analytics.ingest_rowbinary import build_rowbinary_blocks
from services.analytics.store import AnalyticsStore

pytestmark = pytest.mark.integration
INGESTED_AT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
ALL_ROWS = "SELECT * FROM {db}.events ORDER BY topic, partition, offset"


def deliver(event: Event, partition: int, offset: int) -> Delivery:
    raw = event.to_bytes()
    return Delivery(decode_event(raw, event.TOPIC), event.TOPIC, partition, offset, raw)


def batch(first_offset: int = 0) -> list[Delivery]:
    edge = datetime(2026, 3, 1, 2, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    events = [*examples(), PageViewed(visitor_id=VISITOR, path="/ünïcødé/" + "x" * 2000, occurred_at=edge)]
    return [deliver(e, i % 3, first_offset + i) for i, e in enumerate(events)]


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[AnalyticsStore, AnalyticsStore]]:
    """Two databases in one chDB (one data directory per process): tuple path and RowBinary path side by side."""
    opened = [
        await AnalyticsStore.open(
            Settings(core=CoreSettings(data_dir=tmp_path), clickhouse=ClickHouseSettings(database=name))
        )
        for name in ("howhot_tuples", "howhot_rowbinary")
    ]
    yield opened[0], opened[1]
    for store in opened:
        await store.close()


async def rows(store: AnalyticsStore, sql: str = ALL_ROWS) -> list[tuple[object, ...]]:
    return (await store.query(sql.format(db=store.database), {})).rows


async def test_both_paths_store_identical_rows_and_view_rows(stores: tuple[AnalyticsStore, AnalyticsStore]) -> None:
    tuples, rowbinary = stores
    deliveries = batch()
    await tuples.insert_blocks(build_blocks(deliveries, INGESTED_AT))
    await rowbinary.insert_blocks(build_rowbinary_blocks(deliveries, INGESTED_AT))
    stored = await rows(rowbinary)
    assert len(stored) == len(deliveries)
    assert stored == await rows(tuples)
    for view_sql in (  # the materialized views of 002-004 see the same rows, so they hold the same data
        "SELECT * FROM {db}.photo_timeline FINAL ORDER BY ALL",
        "SELECT * FROM {db}.scored_faces FINAL ORDER BY ALL",
        "SELECT minute, type, uniqExactMerge(events) FROM {db}.minute_rollup GROUP BY minute, type ORDER BY ALL",
    ):
        assert await rows(rowbinary, view_sql) == await rows(tuples, view_sql)


async def test_a_retried_batch_is_dropped_and_a_new_one_lands(stores: tuple[AnalyticsStore, AnalyticsStore]) -> None:
    _, store = stores
    blocks = build_rowbinary_blocks(batch())
    await store.insert_blocks(blocks)
    # Different events under the same blocks' tokens: ClickHouse drops them (merges could explain a missing
    # duplicate, never a missing distinct event), so the batch token really deduplicates.
    other = build_rowbinary_blocks(batch())
    await store.insert_blocks([replace(o, dedup_token=b.dedup_token) for o, b in zip(other, blocks, strict=True)])
    assert len(await rows(store)) == sum(len(b.rows) for b in blocks)
    await store.insert_blocks(other)  # genuinely new: new tokens
    assert len(await rows(store, "SELECT DISTINCT event_id FROM {db}.events")) == 2 * sum(len(b.rows) for b in blocks)
