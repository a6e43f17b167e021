"""Forgetting deleted photos on real chDB, through the consumer's real batch handler (RowBinary insert → forget).

The tiny launch (services/analytics/simulate/seeded.py) plus result page views is ingested, then P1 is deleted: P1 was
uploaded by V1 from a news article, shared as S1, opened by V2 and V4 (who uploaded P2 and P4 through S1), rated by
V2 and V4. Afterwards no table outside the rollups may hold a row about P1 (only the photo.deleted row itself), the
rollups must be unchanged, the other photos untouched; a redelivered deletion and a late event of P1 change nothing
that was promised; "don't store my photo" (reason ephemeral) keeps the detail; and the migration forgets deletions
ingested before it existed. One test runs the whole service (Tansu broker → analytics app → HTTP query API) to prove
the consumer is wired to forget.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer

from libs.common import analytics_store
from libs.common.broker import EmbeddedBroker
from libs.common.bus import KafkaEventPublisher, ensure_topics
from libs.common.events import CardRendered, Event, PageViewed, PhotoDeleted, RatingSubmitted, decode_event
from libs.common.events.examples import PHOTO, VISITOR, examples
from libs.common.ids import new_id
from libs.common.observability import METRICS
from libs.common.settings import AnalyticsSettings, ClickHouseSettings, CoreSettings, KafkaSettings, Settings
from services.analytics.app import create_app
from services.analytics.consumer import batch_writer
from services.analytics.forget import DELETED_PHOTOS_TABLE, PER_PHOTO_TABLES, PerPhotoTable
from services.analytics.ingest import EVENT_COLUMNS, build_blocks, photo_id_of
from services.analytics.queries import QUERIES
from services.analytics.simulate.seeded import as_deliveries, seed_id, tiny_launch
from services.analytics.store import AnalyticsStore

pytestmark = pytest.mark.integration
T = TypeVar("T")

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DB = "forget"
P1, P2, P4 = seed_id("photo", 1), seed_id("photo", 2), seed_id("photo", 4)
V1, V2, V4, V6 = (seed_id("visitor", n) for n in (1, 2, 4, 6))
S1 = seed_id("share", 1)
DELETED_AT = T0 + timedelta(minutes=10)
WAIT_S = 30.0  # a consumer group join on a cold broker takes a few seconds
POLL_S = 0.2

ROLLUPS: dict[str, str] = {
    "minute_rollup": "SELECT minute, type, uniqExactMerge(events), uniqExactMerge(visitors) FROM {db}.minute_rollup"
    " WHERE type != 'photo.deleted' GROUP BY minute, type ORDER BY minute, type",
    "minute_counts": "SELECT minute, type, uniqExactMerge(events) FROM {db}.minute_counts"
    " WHERE type != 'photo.deleted' GROUP BY minute, type ORDER BY minute, type",
    "minute_visitors": "SELECT minute, type, uniqMerge(visitors) FROM {db}.minute_visitors"
    " GROUP BY minute, type ORDER BY minute, type",
    "hour_visitors": "SELECT hour, type, uniqMerge(visitors) FROM {db}.hour_visitors GROUP BY hour, type"
    " ORDER BY hour, type",
    "upload_sources": "SELECT minute, referrer, utm_source, uniqExactMerge(uploads) FROM {db}.upload_sources"
    " GROUP BY minute, referrer, utm_source ORDER BY minute, referrer, utm_source",
    "rating_genders": "SELECT minute, rater_gender, rated_gender, hot, uniqExactMerge(ratings) FROM {db}.rating_genders"
    " GROUP BY minute, rater_gender, rated_gender, hot ORDER BY minute, rater_gender, rated_gender, hot",
}
"""The anonymous aggregates that deletions must not move (photo.deleted's own counts excluded: it is new)."""

NOT_PER_PHOTO = {*ROLLUPS, DELETED_PHOTOS_TABLE, "schema_migrations"}


def settings(data_dir: Path) -> Settings:
    return Settings(core=CoreSettings(data_dir=data_dir), clickhouse=ClickHouseSettings(database=DB))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    opened = await AnalyticsStore.open(settings(tmp_path))
    yield opened
    await opened.close()


async def select(store: AnalyticsStore, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return (await store.query(sql.replace("{db}", store.database), params)).rows


def detail_sql(table: PerPhotoTable) -> str:
    """Count the rows of ``table`` about the photo bound as ``photo`` that are not meant to stay."""
    keep = f" AND NOT ({table.keep})" if table.keep else ""
    return (f"SELECT count() FROM {{db}}.{table.name} WHERE {table.key_column} = "
            f"(SELECT {table.key_of_photo_id} FROM (SELECT {{photo:String}} AS photo_id)){keep}")


async def detail_rows(store: AnalyticsStore, table: PerPhotoTable, photo_id: str) -> int:
    ((n,),) = await select(store, detail_sql(table), photo=photo_id)
    return int(n)


async def detail(store: AnalyticsStore, photo_id: str) -> dict[str, int]:
    return {t.name: await detail_rows(store, t, photo_id) for t in PER_PHOTO_TABLES}


async def rollups(store: AnalyticsStore) -> dict[str, list[tuple[Any, ...]]]:
    return {name: await select(store, sql) for name, sql in ROLLUPS.items()}


async def mentions(store: AnalyticsStore, text: str) -> list[tuple[Any, ...]]:
    """Events whose row mentions ``text`` anywhere (ids or payload), with their type."""
    return await select(
        store,
        "SELECT type, photo_id, visitor_id FROM {db}.events WHERE position(payload, {text:String}) > 0"
        " OR photo_id = {text:String} ORDER BY type, photo_id",
        text=text,
    )


def launch_with_result_page_views() -> list[Event]:
    """The tiny launch, plus V1 and V2 looking at their own result pages (a view that links a visitor to a photo)."""
    events, _ = tiny_launch(T0)
    views = [PageViewed(occurred_at=T0 + timedelta(minutes=4, seconds=s), visitor_id=v, path=f"/p/{p}")
             for s, v, p in ((0, V1, P1), (10, V2, P2))]
    return [*events, *views]


class Ingest:
    """Feeds the consumer's batch handler with consecutive offsets on one partition, as the runner would."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.write = batch_writer(store)
        self.next_offset = 0

    async def __call__(self, events: list[Event], first_offset: int | None = None) -> None:
        """Write the batch, then wait for the deletes it registered (ClickHouse applies them in the background)."""
        offset = self.next_offset if first_offset is None else first_offset
        await self.write(as_deliveries(events, first_offset=offset))
        self.next_offset = max(self.next_offset, offset + len(events))
        await eventually(self.pending_mutations, lambda n: n == 0, "the registered deletes applied")

    async def pending_mutations(self) -> int:
        sql = "SELECT count() FROM system.mutations WHERE database = {d:String} AND NOT is_done"
        ((n,),) = await select(self.store, sql, d=self.store.database)
        return int(n)


def delete(photo_id: str, reason: str = "owner") -> PhotoDeleted:
    return PhotoDeleted(occurred_at=DELETED_AT, photo_id=photo_id, reason=reason)  # type: ignore[arg-type]


async def test_a_deleted_photo_leaves_only_aggregates_and_its_deletion(store: AnalyticsStore) -> None:
    ingest = Ingest(store)
    await ingest(launch_with_result_page_views())
    before = await detail(store, P1)
    assert all(before.values()), before  # every per-photo table held P1 (otherwise this test proves nothing)
    p2_before, rollups_before = await detail(store, P2), await rollups(store)
    kpis_before = await kpis(store)

    deletion = [delete(P1)]
    await ingest(deletion)

    assert await detail(store, P1) == dict.fromkeys(before, 0)
    assert await mentions(store, P1) == [("photo.deleted", P1, "")]  # no visitor id on the deletion either
    # S1 stays on the uploads it brought as an opaque id: its share, views and the shares row that led to P1 are gone
    assert await mentions(store, S1) == [("photo.uploaded", P2, V2), ("photo.uploaded", P4, V4)]
    v1_left = await select(store, "SELECT type, photo_id FROM {db}.events WHERE visitor_id = {v:String} ORDER BY type",
                           v=V1)
    assert v1_left == [("page.viewed", ""), ("rating.submitted", P2)]  # V1's upload, share and result view are gone
    assert await detail(store, P2) == p2_before
    assert await rollups(store) == rollups_before
    kpis_after = await kpis(store)
    for rolled_up in ("visitors", "shares", "share_views", "ratings", "sharers"):
        assert kpis_after[rolled_up] == kpis_before[rolled_up], rolled_up

    registered = await select(store, "SELECT count() FROM system.mutations WHERE database = {d:String}", d=DB)
    await ingest(deletion, first_offset=ingest.next_offset - 1)  # redelivered: same offset, same event
    await ingest(deletion)  # re-published: same event id under a new offset
    assert await detail(store, P1) == dict.fromkeys(before, 0)
    assert await select(store, "SELECT count() FROM {db}.events FINAL WHERE type = 'photo.deleted'") == [(1,)]
    assert await select(store, "SELECT photo_id, reason FROM {db}.deleted_photos FINAL") == [(P1, "owner")]
    assert await rollups(store) == rollups_before
    assert await select(store, "SELECT count() FROM system.mutations WHERE database = {d:String}", d=DB) == registered


async def test_late_events_of_a_deleted_photo_are_counted_but_not_kept(store: AnalyticsStore) -> None:
    ingest = Ingest(store)
    await ingest(launch_with_result_page_views())
    await ingest([delete(P1)])
    cards_before = await card_count(store)
    late = [
        CardRendered(occurred_at=DELETED_AT + timedelta(seconds=5), photo_id=P1, template_version="2",
                     card_keys={"og": f"cards/{P1}/og-2.png"}, elapsed_ms=9),
        RatingSubmitted(occurred_at=DELETED_AT + timedelta(seconds=6), visitor_id=V6, photo_id=P1, face_index=0,
                        scale="1to10", rating=9),
        PageViewed(occurred_at=DELETED_AT + timedelta(seconds=7), visitor_id=V1, path=f"/p/{P1}"),
    ]
    await ingest(late)
    assert await detail(store, P1) == dict.fromkeys((t.name for t in PER_PHOTO_TABLES), 0)
    assert await mentions(store, P1) == [("photo.deleted", P1, "")]
    assert await card_count(store) == cards_before + 1  # the rollups count what happened, anonymously


async def test_deleting_an_upload_that_came_through_a_share_keeps_the_k_factor(store: AnalyticsStore) -> None:
    """V2 deletes P2, which came through S1: the upload happened through a share, as V2's own share S2 happened. The
    K-factor's denominator (distinct sharers) is an anonymous rollup that keeps V2, so its numerator must keep P2 too,
    like the traffic sources' 'share link' uploads do; a numerator read from photo_stages lost P2 (K 1.0 → 0.5)."""
    ingest = Ingest(store)
    await ingest(launch_with_result_page_views())
    before = await kpis(store)
    assert (before["attributed_uploads"], before["sharers"], before["k_factor"]) == (2, 2, 1.0)

    await ingest([delete(P2)])

    assert await detail(store, P2) == dict.fromkeys((t.name for t in PER_PHOTO_TABLES), 0)  # P2's detail is gone
    after = await kpis(store)
    assert (after["attributed_uploads"], after["sharers"], after["k_factor"]) == (2, 2, 1.0)
    assert after["share_to_upload_p50_s"] == 140.0  # the cycle times need P2's detail: P4's alone (S1 0:40 → 3:00)
    sources = await select(store, "SELECT sum(n) FROM (SELECT minute, uniqExactMerge(uploads) AS n"
                                  " FROM {db}.upload_sources WHERE referrer = 'share link' GROUP BY minute)")
    assert sources == [(after["attributed_uploads"],)]


async def test_dont_store_my_photo_keeps_the_scores_analytics(store: AnalyticsStore) -> None:
    ingest = Ingest(store)
    await ingest(launch_with_result_page_views())
    before = await detail(store, P4)
    await ingest([delete(P4, reason="ephemeral")])
    assert before["events"] and before["scored_faces"] and before["photo_stages"]
    assert await detail(store, P4) == before
    assert await select(store, "SELECT count() FROM {db}.deleted_photos") == [(0,)]


async def test_every_table_is_either_forgotten_per_photo_or_an_aggregate(store: AnalyticsStore) -> None:
    """A migration that adds a table must say which it is: this fails until the table is in one of the two lists."""
    tables = await select(store, "SELECT name FROM system.tables WHERE database = {d:String}"
                                 " AND engine != 'MaterializedView' ORDER BY name", d=store.database)
    assert {name for (name,) in tables} == {t.name for t in PER_PHOTO_TABLES} | NOT_PER_PHOTO


def test_the_migration_forgets_photos_deleted_before_it(tmp_path: Path) -> None:
    """Deletions ingested before 005 (no forgetting then) are forgotten when it is applied, page views included."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(analytics_store.MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "005":
            shutil.copy(path, older / path.name)
    config = settings(tmp_path / "chdb")
    client = analytics_store.connect(config)
    try:
        analytics_store.migrate(client, DB, older)
        events = [*launch_with_result_page_views(), delete(P1)]
        for block in build_blocks(as_deliveries(events)):
            client.insert(f"{DB}.events", block.rows, column_names=list(EVENT_COLUMNS))
        view_of_p1 = f"SELECT count() FROM {DB}.events WHERE position(payload, '/p/{P1}') > 0"
        assert client.query(view_of_p1).result_rows == [(1,)]
        # rows written before ingest stored a result page's photo id (its UPDATE in 005 must set it)
        client.command(f"ALTER TABLE {DB}.events UPDATE photo_id = '' WHERE type = 'page.viewed'"
                       " SETTINGS mutations_sync = 2")
        analytics_store.migrate(client, DB)
        leftover = {t.name: client.query(detail_sql(t).replace("{db}", DB), parameters={"photo": P1}).result_rows[0][0]
                    for t in PER_PHOTO_TABLES}
        assert leftover == dict.fromkeys(leftover, 0)
        assert client.query(view_of_p1).result_rows == [(0,)]
        p2_view = f"SELECT photo_id FROM {DB}.events WHERE type = 'page.viewed' AND position(payload, '/p/{P2}') > 0"
        assert client.query(p2_view).result_rows == [(P2,)]
    finally:
        client.close()


async def kpis(store: AnalyticsStore) -> dict[str, Any]:
    query = QUERIES["kpis"]
    params = query.params.model_validate({"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()})
    result = await store.query(query.render(store.database), params.bind())
    (row,) = result.rows
    return dict(zip(result.columns, row, strict=True))


async def card_count(store: AnalyticsStore) -> int:
    ((n,),) = await select(store, "SELECT uniqExactMerge(events) FROM {db}.minute_counts WHERE type = 'card.rendered'")
    return int(n)


async def eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str) -> T:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not done(value := await read()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {what} (last: {value!r})")
        await asyncio.sleep(POLL_S)
    return value


async def test_the_running_service_forgets_a_deleted_photo(kafka_broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Every example event of a fresh photo through Kafka, then its deletion, then a late card: the query API ends up
    showing only the deletion (the deletes are applied in the background, hence the waits)."""
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap, retry_backoff_s=0.05, handler_retries=1)
    await ensure_topics(kafka)
    config = Settings(core=CoreSettings(data_dir=tmp_path), kafka=kafka,
                      analytics=AnalyticsSettings(batch_size=500, flush_interval_s=0.2))
    photo, visitor = new_id() + "Ph", new_id() + "Vi"  # the session's broker is shared with other tests
    journey = [decode_event(e.model_dump_json().replace(PHOTO, photo).replace(VISITOR, visitor).encode())
               for e in examples() if not isinstance(e, PhotoDeleted)]
    about_photo = sum(1 for e in journey if photo_id_of(e.__dict__) == photo)
    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start()
    client = TestClient(TestServer(create_app(config)))
    await client.start_server()

    async def photo_event_types() -> list[str]:
        response = await client.get("/api/v1/query/photo_events", params={"photo_id": photo})
        doc = await response.json()
        return [row[doc["columns"].index("type")] for row in doc["rows"]]

    async def cards_handled() -> float:
        return float(client.app[METRICS].events_handled.labels(CardRendered.TOPIC)._value.get())

    try:
        await publisher.publish_many(journey)
        await eventually(photo_event_types, lambda types: len(types) == about_photo, "the journey stored")
        await publisher.publish_many([PhotoDeleted(photo_id=photo, reason="retention")])
        await eventually(photo_event_types, lambda types: types == ["photo.deleted"], "the journey forgotten")
        cards = await cards_handled()
        late = CardRendered(photo_id=photo, template_version="late", card_keys={}, elapsed_ms=1)
        await publisher.publish_many([late])
        await eventually(cards_handled, lambda n: n > cards, "the late card consumed (inserted, delete registered)")
        await eventually(photo_event_types, lambda types: types == ["photo.deleted"], "the late card forgotten")
    finally:
        await client.close()
        await publisher.stop()
