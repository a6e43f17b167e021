"""The analytics store on real chDB (tmp_path): the migration, token deduplication, and every named query's SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.common.bus import Delivery
from libs.common.events import decode_event
from libs.common.events.examples import PHOTO, VISITOR, examples
from libs.common.settings import ClickHouseSettings, CoreSettings, Settings
from services.analytics.ingest import build_blocks
from services.analytics.queries import QUERIES
from services.analytics.store import AnalyticsStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    settings = Settings(core=CoreSettings(data_dir=tmp_path), clickhouse=ClickHouseSettings(database="howhot_test"))
    opened = await AnalyticsStore.open(settings)
    yield opened
    await opened.close()


N_EVENTS = len(examples())  # one example per event type
N_PHOTO_EVENTS = sum(getattr(e, "photo_id", None) == PHOTO for e in examples())


def deliveries() -> list[Delivery]:
    return [
        Delivery(decode_event(e.to_bytes()), e.TOPIC, 0, offset, e.to_bytes()) for offset, e in enumerate(examples())
    ]


async def run(store: AnalyticsStore, name: str, **params: object) -> list[dict[str, object]]:
    query = QUERIES[name]
    bound = query.params.model_validate(params).bind()
    result = await store.query(query.render(store.database), bound)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


async def test_same_token_is_dropped_and_replacing_merge_tree_hides_the_rest(store: AnalyticsStore) -> None:
    batch = deliveries()
    blocks = build_blocks(batch)
    await store.insert_blocks(blocks)
    # A block with an already-seen token is dropped by ClickHouse itself: prove it with *different* events under the
    # same token (background merges could explain missing duplicates, never a missing distinct event).
    other = build_blocks(deliveries())
    await store.insert_blocks([replace(o, dedup_token=b.dedup_token) for o, b in zip(other, blocks, strict=True)])
    assert (await run(store, "dedup_stats"))[0]["events"] == N_EVENTS
    shifted = [Delivery(d.event, d.topic, d.partition, d.offset + 100, d.raw) for d in batch]
    await store.insert_blocks(build_blocks(shifted))  # re-published: new offsets, new token → duplicate rows land
    stats = (await run(store, "dedup_stats"))[0]
    assert stats["events"] == N_EVENTS and stats["rows"] >= N_EVENTS  # (merges may have collapsed some duplicates)
    assert len(await run(store, "photo_events", photo_id=PHOTO)) == N_PHOTO_EVENTS  # FINAL: exact regardless of merges
    counts = await run(store, "event_counts")
    assert sum(int(c["events"]) for c in counts) == N_EVENTS  # type: ignore[call-overload]


async def test_every_named_query_runs(store: AnalyticsStore) -> None:
    await store.insert_blocks(build_blocks(deliveries()))
    now = datetime.now(UTC)
    hour_ago, soon = (now - timedelta(hours=1)).isoformat(), (now + timedelta(minutes=1)).isoformat()
    counts = await run(store, "event_counts", **{"from": hour_ago, "to": soon})
    assert {c["type"]: c["events"] for c in counts}["photo.uploaded"] == 1
    assert await run(store, "event_counts", **{"from": soon}) == []
    journey = await run(store, "photo_events", photo_id=PHOTO)
    assert [row["occurred_at"] for row in journey] == sorted(row["occurred_at"] for row in journey)
    assert {row["type"] for row in await run(store, "visitor_events", visitor_id=VISITOR)} >= {"page.viewed"}
    per_minute = await run(store, "events_per_minute", type="photo.scored", **{"from": hour_ago, "to": soon})
    assert sum(int(row["events"]) for row in per_minute) == 1  # type: ignore[call-overload]
    recent = await run(store, "recent_events", limit="3")
    assert len(recent) == 3
    assert (await run(store, "dedup_stats", photo_id=PHOTO))[0]["events"] == N_PHOTO_EVENTS
    tested_here = {"event_counts", "photo_events", "visitor_events", "events_per_minute", "recent_events",
                   "dedup_stats"}
    tested_in_rollups = {"kpis", "activity_per_minute", "spikes", "spike_sources", "funnel", "stage_latency",
                         "age_histogram", "gender_split", "attractiveness_by_group", "hot_ratings_by_gender",
                         "traffic_sources", "data_bounds"}  # exact expected numbers in test_rollups_queries.py
    for name in QUERIES:  # a query added without a test must be added to one of the sets above, with its test
        assert name in tested_here | tested_in_rollups, f"add a test for {name}"


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    settings = Settings(core=CoreSettings(data_dir=tmp_path))
    first = await AnalyticsStore.open(settings)
    await first.close()
    again = await AnalyticsStore.open(settings)  # reopening applies nothing and keeps the data directory usable
    try:
        assert await again.ping()
    finally:
        await again.close()
