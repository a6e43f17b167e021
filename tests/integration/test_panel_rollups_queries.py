"""The fast panel tables of 004_panel_rollups.sql (and 006's rating_genders) on real chDB: backfilled or fed live,
merged or not, the figures of the seeded tiny launch stay exact, and ranges that cut an hour (visitors from hour +
minute states) or a cohort (photos uploaded in range) give the hand-derived numbers.

The tiny launch's story is in services/analytics/simulate/seeded.py; test_rollups_queries.py checks its whole-hour
figures through the HTTP API. Here the store is driven directly (no API) because the point is the migration path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from libs.common import analytics_store
from libs.common.events import RatingSubmitted
from libs.common.settings import ClickHouseSettings, CoreSettings, Settings
from services.analytics.ingest import EVENT_COLUMNS, build_blocks
from services.analytics.queries import HOT_RATING_1TO10, HOT_RATING_HOT_OR_NOT, QUERIES
from services.analytics.simulate.seeded import as_deliveries, face, photo_journey, seed_id, tiny_launch

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DB = "panels"
PANEL_MIGRATION = "004_panel_rollups.sql"


def _range(start_min: int, end_min: int) -> dict[str, str]:
    return {"from": (T0 + timedelta(minutes=start_min)).isoformat(),
            "to": (T0 + timedelta(minutes=end_min)).isoformat()}


def run(client: Client, name: str, **params: str) -> list[dict[str, Any]]:
    query = QUERIES[name]
    result = client.query(query.render(DB), parameters=query.params.model_validate(params).bind())
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def insert_tiny(client: Client) -> None:
    """The tiny launch, then two of its events again under new offsets (duplicates with a new dedup token)."""
    events, duplicates = tiny_launch(T0)
    for deliveries in (as_deliveries(events), as_deliveries(duplicates, partition=1)):
        for block in build_blocks(deliveries):
            client.insert(f"{DB}.events", block.rows, column_names=list(EVENT_COLUMNS),
                          settings={"insert_deduplication_token": block.dedup_token})


def figures(client: Client) -> dict[str, Any]:
    """Every figure these tests pin down, keyed by what it is."""
    hour = _range(0, 60)
    (kpis,) = run(client, "kpis", **hour)
    return {
        "kpis": kpis,
        "funnel": [(r["step"], r["value"]) for r in run(client, "funnel", **hour)],
        "stages": [(r["stage"], r["photos"], r["p50_ms"], r["p95_ms"]) for r in run(client, "stage_latency", **hour)],
        "hot": [(r["rater_gender"], r["rated_gender"], r["ratings"], r["hot"])
                for r in run(client, "hot_ratings_by_gender", **hour)],
        "sources": [(r["dimension"], r["value"], r["uploads"]) for r in run(client, "traffic_sources", **hour)],
        "series": [r["value"] for r in run(client, "activity_per_minute", metric="evaluations", **_range(0, 5))],
    }


EXPECTED_KPIS = {
    "evaluations": 4, "evaluations_today": 4, "visitors": 6, "photos": 4, "shares": 2, "share_views": 3,
    "ratings": 4, "sharers": 2, "attributed_uploads": 2, "k_factor": 1.0, "share_to_upload_p50_s": 80.0,
    "share_to_upload_p95_s": 134.0, "result_p50_s": 5.0, "result_p95_s": 5.9,
}


EXPECTED_HOT = [("female", "male", 1, 1), ("male", "female", 2, 1), ("unknown", "male", 1, 0)]  # test_rollups_queries


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    settings = Settings(core=CoreSettings(data_dir=tmp_path / "chdb"), clickhouse=ClickHouseSettings(database=DB))
    opened = analytics_store.connect(settings)
    yield opened
    opened.close()


def test_backfill_live_and_merged_states_give_the_same_exact_figures(client: Client, tmp_path: Path) -> None:
    before = tmp_path / "migrations-before-004"
    before.mkdir()
    for path in sorted(analytics_store.MIGRATIONS_DIR.glob("*.sql")):
        if path.name < PANEL_MIGRATION:
            shutil.copy(path, before / path.name)
    analytics_store.migrate(client, DB, migrations_dir=before)
    insert_tiny(client)  # stored before 004 existed: 004's backfill must pick it up
    assert analytics_store.migrate(client, DB)[0] == PANEL_MIGRATION  # (and any later migration)
    backfilled = figures(client)
    assert backfilled["kpis"] == EXPECTED_KPIS
    assert backfilled["series"] == [1.0, 2.0, 0.0, 1.0, 0.0]  # faces scored per minute 14:00–14:04
    assert backfilled["hot"] == EXPECTED_HOT  # 006's backfill (rating_genders), duplicates included

    client.command(f"TRUNCATE TABLE {DB}.events")
    for table in ("photo_stages", "upload_sources", "hour_visitors", "minute_counts", "minute_visitors", "shares",
                  "scored_faces", "minute_rollup", "photo_timeline", "rating_genders"):
        client.command(f"TRUNCATE TABLE {DB}.{table}")
    insert_tiny(client)  # now fed by the MVs, duplicates in their own, unmerged parts
    assert figures(client) == backfilled
    for table in ("photo_stages", "upload_sources", "hour_visitors", "minute_counts", "rating_genders"):
        client.command(f"OPTIMIZE TABLE {DB}.{table} FINAL")
    assert figures(client) == backfilled  # and after every merge (duplicates collapsed)


@pytest.fixture
def tiny(client: Client) -> Client:
    analytics_store.migrate(client, DB)
    insert_tiny(client)
    return client


@pytest.mark.parametrize(
    ("start_min", "end_min", "visitors", "sharers"),
    [
        (-60, 60, 6, 2),  # two whole hours: hour states only
        (3, 120, 5, 0),  # 14:03–16:00: minutes of a cut hour plus a whole empty hour; V3 was last seen at 2:30
        (0, 3, 5, 2),  # 14:00–14:03: minute states only; V6 arrives at 3:30
    ],
)
def test_visitors_combine_whole_hours_and_edge_minutes(
    tiny: Client, start_min: int, end_min: int, visitors: int, sharers: int
) -> None:
    (kpis,) = run(tiny, "kpis", **_range(start_min, end_min))
    assert (kpis["visitors"], kpis["sharers"]) == (visitors, sharers)


def test_a_range_cutting_the_launch_follows_the_photos_uploaded_in_it(tiny: Client) -> None:
    first_two = _range(0, 2)  # P1 (0:10, news/press) and P2 (1:00, via S1)
    assert [(r["step"], r["value"]) for r in run(tiny, "funnel", **first_two)] == [
        ("visited", 2),  # V1 0:05, V2 0:55
        ("uploaded", 2), ("face found", 2), ("got a result", 2),
        ("shared", 2),  # S1 of P1 at 0:40, S2 of P2 at 2:00: a cohort keeps what its photos did later
        ("share viewed", 2),
        ("brought an upload", 1),  # V1: V2 and V4 uploaded through S1 (V4 at 3:00, outside the range)
    ]
    assert [(r["stage"], r["photos"], r["p50_ms"], r["p95_ms"]) for r in run(tiny, "stage_latency", **first_two)] == [
        ("upload → faces", 2, 1500.0, 1950.0),  # 2 s and 1 s
        ("faces → scored", 2, 2500.0, 2950.0),  # 3 s and 2 s
        ("scored → card", 2, 1000.0, 1000.0),
        ("upload → result", 2, 4000.0, 4900.0),  # 5 s and 3 s
    ]
    sources = run(tiny, "traffic_sources", **first_two)
    assert [(r["dimension"], r["value"], r["uploads"], r["pct"]) for r in sources] == [
        ("referrer", "news.example.com", 1, 50.0),
        ("referrer", "share link", 1, 50.0),
        ("utm_source", "(none)", 1, 50.0),
        ("utm_source", "press", 1, 50.0),
    ]


def test_rating_genders_rollup_hot_rule_and_ratings_without_genders(client: Client) -> None:
    """006 counts 'hot' as the panel always did (1to10 ≥ 7, hot_or_not 1), minute by minute and exactly; ratings
    published before the genders existed (or by raters without a photo) read 'unknown'."""
    sql = (analytics_store.MIGRATIONS_DIR / "006_rating_genders.sql").read_text()
    assert f">= {HOT_RATING_1TO10:g}," in sql and f">= {HOT_RATING_HOT_OR_NOT:g})" in sql
    analytics_store.migrate(client, DB)
    photo, rater = "photo0000000000000009", "visitor00000000000009"
    ratings = [  # 1to10 at the edges of hot, then a hot_or_not without any gender, in another minute
        RatingSubmitted(occurred_at=T0 + timedelta(seconds=5), visitor_id=rater, photo_id=photo, face_index=0,
                        scale="1to10", rating=rating, rated_gender="female", rater_gender="female")
        for rating in (6.9, 7.0, 10.0)
    ] + [RatingSubmitted(occurred_at=T0 + timedelta(minutes=1, seconds=5), visitor_id=rater, photo_id=photo,
                         face_index=0, scale="hot_or_not", rating=1)]
    for deliveries in (as_deliveries(ratings), as_deliveries(ratings[:2], partition=1)):  # with duplicates
        for block in build_blocks(deliveries):
            client.insert(f"{DB}.events", block.rows, column_names=list(EVENT_COLUMNS),
                          settings={"insert_deduplication_token": block.dedup_token})
    hot = [(r["rater_gender"], r["rated_gender"], r["ratings"], r["hot"], r["hot_pct"])
           for r in run(client, "hot_ratings_by_gender", **_range(0, 60))]
    assert hot == [("female", "female", 3, 2, 66.7), ("unknown", "unknown", 1, 1, 100.0)]
    assert run(client, "hot_ratings_by_gender", **_range(1, 2))[0]["rater_gender"] == "unknown"  # whole minutes


def test_attractiveness_median_and_p90_interpolate_like_the_other_percentiles(client: Client) -> None:
    """Median and p90 of a group interpolate between the faces' scores (median of 5, 6, 7 and 9 is 6.5), as the KPIs'
    and stage latencies' do; the nearest-rank value (7) overstated the middle of every even-sized group. A withheld
    face of the group counts among its faces, not among the scores."""
    analytics_store.migrate(client, DB)
    scores = (5.0, 6.0, 7.0, 9.0, None)
    events = [
        e for n, score in enumerate(scores)
        for e in photo_journey(T0 + timedelta(seconds=n), seed_id("photo", 20 + n), seed_id("visitor", 20 + n),
                               [face(0, 30, "male", score)])
    ]
    for block in build_blocks(as_deliveries(events)):
        client.insert(f"{DB}.events", block.rows, column_names=list(EVENT_COLUMNS),
                      settings={"insert_deduplication_token": block.dedup_token})
    columns = ("gender", "age_band", "faces", "scored", "mean", "median", "p90")
    groups = [tuple(r[c] for c in columns) for r in run(client, "attractiveness_by_group", **_range(0, 60))]
    assert groups == [("male", "25-34", 5, 4, 6.75, 6.5, 8.4)]  # p90: 7 + 0.7 × (9 − 7)
