"""The funnel counts one unit, distinct visitors, at every step, so no bar exceeds 100 % of the step before it.

Regression: the funnel counted visitors at 'visited' but photos at every later step, and uploads brought by shares at
the last one, so a visitor with three photos read 300 % and one viewed share that brought two uploads read 200 %.
Real chDB, the real migrations and ingest blocks, the panel's own chart labels.

Story (minutes after T0): A views the home page and uploads P1–P3, shares P1 as S1. B opens S1, uploads P4 through
it; C opens S1, uploads P5 through it (no face). D uploads P7, shares it as S2 and uploads P8 through S2 himself; E
opens S2 and leaves. F only views the home page. G uploads P9 with no page view in range (he saw it at -2:00).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from clickhouse_connect.driver.client import Client

from libs.common import analytics_store
from libs.common.events import Attribution, Event, PageViewed, PhotoShared, ShareViewed
from libs.common.settings import ClickHouseSettings, CoreSettings, Settings
from services.analytics.dashboard_app import charts
from services.analytics.ingest import EVENT_COLUMNS, build_blocks
from services.analytics.queries import QUERIES
from services.analytics.simulate.seeded import as_deliveries, face, photo_journey, seed_id

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DB = "funnel_units"
A, B, C, D, E, F, G = (seed_id("visitor", i) for i in range(1, 8))
P = [seed_id("photo", i) for i in range(10)]
S1, S2 = seed_id("share", 1), seed_id("share", 2)


def at(minutes: int, seconds: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def _range(start_min: int, end_min: int) -> dict[str, str]:
    return {"from": at(start_min).isoformat(), "to": at(end_min).isoformat()}


def story() -> list[Event]:
    def view(minutes: int, seconds: int, visitor: str) -> PageViewed:
        return PageViewed(occurred_at=at(minutes, seconds), visitor_id=visitor, path="/")

    def journey(minutes: int, seconds: int, photo: str, visitor: str, *, faces: int = 1,
                via: str | None = None) -> list[Event]:
        return photo_journey(at(minutes, seconds), photo, visitor, [face(0, 30, "female", 6.0)] * faces,
                             attribution=Attribution(share_id=via))

    return [
        view(-2, 0, G),
        view(0, 5, A), *journey(0, 10, P[1], A), *journey(0, 20, P[2], A), *journey(0, 30, P[3], A),
        PhotoShared(occurred_at=at(0, 50), photo_id=P[1], share_id=S1, visitor_id=A, channel="copy"),
        ShareViewed(occurred_at=at(1, 0), share_id=S1, photo_id=P[1], visitor_id=B),
        view(1, 5, B), *journey(1, 10, P[4], B, via=S1),
        ShareViewed(occurred_at=at(1, 20), share_id=S1, photo_id=P[1], visitor_id=C),
        view(1, 25, C), *journey(1, 30, P[5], C, faces=0, via=S1),
        view(1, 40, D), *journey(1, 45, P[7], D),
        PhotoShared(occurred_at=at(2, 0), photo_id=P[7], share_id=S2, visitor_id=D, channel="x"),
        *journey(2, 10, P[8], D, via=S2),  # his own link in another tab: not a new visitor
        ShareViewed(occurred_at=at(2, 20), share_id=S2, photo_id=P[7], visitor_id=E),
        view(2, 30, F),
        *journey(3, 0, P[9], G),
    ]


OWNER_MIGRATION = "009_photo_owner.sql"
EXPECTED = [
    ("visited", 6, "visitors"),  # A B C D F with a page view, and G who uploaded (his page view was before)
    ("uploaded", 5, "visitors"),  # A (3 photos), B, C, D (2 photos), G: not 9 photos
    ("face found", 4, "visitors"),  # C's photo has no face
    ("got a result", 4, "visitors"),
    ("shared", 2, "visitors"),  # A and D
    ("share viewed", 2, "visitors"),  # S1 by B and C, S2 by E
    ("brought an upload", 1, "visitors"),  # A (B and C uploaded through S1): not 2 uploads; D's own doesn't count
]


def insert_story(client: Client) -> None:
    for block in build_blocks(as_deliveries(story())):
        client.insert(f"{DB}.events", block.rows, column_names=list(EVENT_COLUMNS),
                      settings={"insert_deduplication_token": block.dedup_token})


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Client]:
    settings = Settings(core=CoreSettings(data_dir=tmp_path / "chdb"), clickhouse=ClickHouseSettings(database=DB))
    opened = analytics_store.connect(settings)
    yield opened
    opened.close()


@pytest.fixture
def client(empty: Client) -> Client:
    analytics_store.migrate(empty, DB)
    insert_story(empty)  # fed live by the views
    return empty


def funnel(client: Client, **params: str) -> list[dict[str, Any]]:
    query = QUERIES["funnel"]
    result = client.query(query.render(DB), parameters=query.params.model_validate(params).bind())
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def percent_labels(rows: list[dict[str, Any]]) -> list[float]:
    """The '% of previous step' the panel prints next to each bar after the first, from the chart it draws."""
    spec = charts.funnel_chart(pd.DataFrame(rows)).to_dict()
    frame = next(iter(spec["datasets"].values()))
    return [row["of_previous"] for row in frame[1:]]


def test_every_step_counts_distinct_visitors_and_stays_within_100_percent(client: Client) -> None:
    rows = funnel(client, **_range(0, 60))
    assert [(r["step"], r["value"], r["unit"]) for r in rows] == EXPECTED
    assert percent_labels(rows) == [83.3, 80.0, 100.0, 50.0, 100.0, 50.0]


def test_a_store_from_before_009_gets_the_owners_from_the_backfill(empty: Client, tmp_path: Path) -> None:
    before = tmp_path / "migrations-before-009"
    before.mkdir()
    for path in sorted(analytics_store.MIGRATIONS_DIR.glob("*.sql")):
        if path.name < OWNER_MIGRATION:
            shutil.copy(path, before / path.name)
    analytics_store.migrate(empty, DB, migrations_dir=before)
    insert_story(empty)  # photo_stages rows without an owner
    assert analytics_store.migrate(empty, DB)[0] == OWNER_MIGRATION
    assert [(r["step"], r["value"], r["unit"]) for r in funnel(empty, **_range(0, 60))] == EXPECTED
    empty.command(f"OPTIMIZE TABLE {DB}.photo_stages FINAL")
    assert [(r["step"], r["value"], r["unit"]) for r in funnel(empty, **_range(0, 60))] == EXPECTED


@pytest.mark.parametrize(("start_min", "end_min"), [(0, 60), (0, 1), (1, 2), (1, 60), (2, 60), (3, 4), (-60, 60)])
def test_no_step_exceeds_the_one_before_in_any_range(client: Client, start_min: int, end_min: int) -> None:
    rows = funnel(client, **_range(start_min, end_min))
    assert {r["unit"] for r in rows} == {"visitors"}
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True), rows
    assert all(pct <= 100.0 for pct in percent_labels(rows) if pct is not None), rows  # None: 0 of 0, no percent
