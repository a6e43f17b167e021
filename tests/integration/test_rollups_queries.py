"""The virality queries on seeded chDB, through the real ingest path and the real HTTP query API, with exact figures.

The expected numbers are derived by hand from the stories in services/analytics/simulate/seeded.py (read its
docstrings next to these tests). tiny_launch also re-inserts two events under new offsets: duplicates the
ReplacingMergeTree has not merged yet, which must not change any figure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from libs.common.settings import ClickHouseSettings, CoreSettings, Settings
from services.analytics.app import create_app
from services.analytics.ingest import build_blocks
from services.analytics.simulate.seeded import as_deliveries, steady_with_spike, tiny_launch
from services.analytics.store import AnalyticsStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
HOUR = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()}


async def _serve_seeded(tmp: Path, seed: str) -> tuple[TestClient, AnalyticsStore]:
    """One chDB path per process (chDB's rule), so both datasets share it, each in a database of its own."""
    settings = Settings(core=CoreSettings(data_dir=tmp), clickhouse=ClickHouseSettings(database=seed))
    store = await AnalyticsStore.open(settings)
    if seed == "tiny":
        events, duplicates = tiny_launch(T0)
        await store.insert_blocks(build_blocks(as_deliveries(events)))
        await store.insert_blocks(build_blocks(as_deliveries(duplicates, partition=1)))
    else:
        await store.insert_blocks(build_blocks(as_deliveries(steady_with_spike(T0))))
    client = TestClient(TestServer(create_app(settings, store=store, consume=False)))
    await client.start_server()
    return client, store


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rollups")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tiny(chdb_dir: Path) -> AsyncIterator[TestClient]:
    client, store = await _serve_seeded(chdb_dir, "tiny")
    yield client
    await client.close()
    await store.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def spiky(chdb_dir: Path) -> AsyncIterator[TestClient]:
    client, store = await _serve_seeded(chdb_dir, "spiky")
    yield client
    await client.close()
    await store.close()


async def rows(client: TestClient, name: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/query/{name}", params=params)
    assert response.status == 200, await response.text()
    doc = await response.json()
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


async def test_kpis(tiny: TestClient) -> None:
    (kpis,) = await rows(tiny, "kpis", **HOUR)
    assert kpis == {
        "evaluations": 4,  # P1 one face, P2 two, P4 one; the duplicate scored event adds nothing
        "evaluations_today": 4,
        "visitors": 6,
        "photos": 4,
        "shares": 2,
        "share_views": 3,
        "ratings": 4,  # the duplicate rating adds nothing
        "sharers": 2,
        "attributed_uploads": 2,  # P2 and P4 came through S1
        "k_factor": 1.0,
        "share_to_upload_p50_s": 80.0,  # S1 shared at 0:40 → uploads at 1:00 (20 s) and 3:00 (140 s)
        "share_to_upload_p95_s": 134.0,
        "result_p50_s": 5.0,  # upload → scored: 3, 5, 6 s
        "result_p95_s": 5.9,
    }


async def test_kpis_outside_the_data_are_zero_and_null(tiny: TestClient) -> None:
    later = {"from": (T0 + timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=2)).isoformat()}
    (kpis,) = await rows(tiny, "kpis", **later)
    assert kpis["evaluations"] == 0 and kpis["visitors"] == 0
    assert kpis["k_factor"] is None and kpis["result_p50_s"] is None and kpis["share_to_upload_p50_s"] is None


async def test_kpis_today_is_the_day_of_the_range_end(tiny: TestClient) -> None:
    next_day = {"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
    (kpis,) = await rows(tiny, "kpis", **next_day)
    assert (kpis["evaluations"], kpis["evaluations_today"]) == (4, 0)


async def test_funnel(tiny: TestClient) -> None:
    funnel = await rows(tiny, "funnel", **HOUR)
    assert [(r["step"], r["value"], r["unit"]) for r in funnel] == [
        ("visited", 6, "visitors"),
        ("uploaded", 4, "visitors"),  # V1–V4, one photo each
        ("face found", 3, "visitors"),  # V3's P3 has no face
        ("got a result", 3, "visitors"),
        ("shared", 2, "visitors"),  # V1 (S1), V2 (S2)
        ("share viewed", 2, "visitors"),  # S1 by V2 and V4, S2 by V5
        ("brought an upload", 1, "visitors"),  # V1: V2 and V4 uploaded through S1
    ]


async def test_stage_latency(tiny: TestClient) -> None:
    stages = await rows(tiny, "stage_latency", **HOUR)
    assert [(r["stage"], r["photos"], r["p50_ms"], r["p95_ms"]) for r in stages] == [
        ("upload → faces", 4, 2000.0, 3700.0),  # 2, 1, 2, 4 s
        ("faces → scored", 3, 2000.0, 2900.0),  # 3, 2, 2 s
        ("scored → card", 2, 1000.0, 1000.0),  # P4 has no card
        ("upload → result", 3, 5000.0, 5900.0),
    ]


async def test_distributions(tiny: TestClient) -> None:
    ages = await rows(tiny, "age_histogram", **HOUR)
    assert [(r["age_from"], r["gender"], r["faces"]) for r in ages] == [
        (15, "female", 1), (20, "female", 1), (30, "male", 1), (40, "male", 1),
    ]
    split = await rows(tiny, "gender_split", **HOUR)
    assert [(r["gender"], r["faces"], r["pct"]) for r in split] == [("female", 2, 50.0), ("male", 2, 50.0)]
    groups = await rows(tiny, "attractiveness_by_group", **HOUR)
    assert [(r["gender"], r["age_band"], r["faces"], r["scored"], r["mean"]) for r in groups] == [
        ("female", "18-24", 1, 1, 7.5),
        ("female", "<18", 1, 0, None),  # the girl of 16: attractiveness withheld
        ("male", "25-34", 1, 1, 6.0),
        ("male", "35-44", 1, 1, 5.0),
    ]


async def test_hot_ratings_by_gender(tiny: TestClient) -> None:
    hot = await rows(tiny, "hot_ratings_by_gender", **HOUR)
    assert [(r["rater_gender"], r["rated_gender"], r["ratings"], r["hot"], r["hot_pct"]) for r in hot] == [
        ("female", "male", 1, 1, 100.0),  # V1 (P1: female) gives P2's man an 8
        ("male", "female", 2, 1, 50.0),  # V2 (P2 face 0: male) says hot, V4 (P4: male) gives a 6
        ("unknown", "male", 1, 0, 0.0),  # V5 uploaded nothing
    ]


async def test_traffic_sources(tiny: TestClient) -> None:
    sources = await rows(tiny, "traffic_sources", **HOUR)
    assert [(r["dimension"], r["value"], r["uploads"], r["pct"]) for r in sources] == [
        ("referrer", "share link", 2, 50.0),
        ("referrer", "google.com", 1, 25.0),
        ("referrer", "news.example.com", 1, 25.0),
        ("utm_source", "(none)", 3, 75.0),
        ("utm_source", "press", 1, 25.0),
    ]


FOUR_HOURS = {"from": T0.isoformat(), "to": (T0 + timedelta(hours=4)).isoformat()}


async def test_activity_per_minute_fills_gaps_and_marks_the_spike(spiky: TestClient) -> None:
    series = await rows(spiky, "activity_per_minute", metric="evaluations", **FOUR_HOURS)
    assert len(series) == 240
    spikes = [(r["minute"][11:16], r["value"]) for r in series if r["is_spike"]]
    assert spikes == [("16:00", 50.0), ("16:01", 40.0), ("16:02", 30.0), ("16:03", 20.0)]
    assert {r["baseline"] for r in series} == {5.0}
    empty = await rows(spiky, "activity_per_minute", metric="ratings", **FOUR_HOURS)
    assert len(empty) == 240 and not any(r["value"] or r["is_spike"] for r in empty)


async def test_spikes_are_attributed_to_their_referrer(spiky: TestClient) -> None:
    (spike,) = await rows(spiky, "spikes", **FOUR_HOURS)
    assert spike == {
        "start": "2026-03-02T16:00:00",  # UTC (clickhouse-connect answers naive UTC datetimes)
        "end": "2026-03-02T16:04:00",
        "peak_minute": "2026-03-02T16:00:00",
        "peak_value": 50.0,
        "baseline_at_peak": 5.0,
        "excess": 120.0,  # 45 + 35 + 25 + 15 press photos
        "top_referrer": "news.example.com",
        "top_referrer_pct": 85.7,  # 120 of the 140 photos uploaded in those four minutes
        "top_utm_source": "press",
        "top_utm_source_pct": 85.7,
        "photos": 140,
    }
    sources = await rows(spiky, "spike_sources", **FOUR_HOURS)
    assert [(r["dimension"], r["value"], r["photos"], r["pct"]) for r in sources] == [
        ("referrer", "news.example.com", 120, 85.7),
        ("referrer", "direct", 20, 14.3),
        ("utm_source", "press", 120, 85.7),
        ("utm_source", "(none)", 20, 14.3),
    ]


async def test_new_queries_reject_bad_parameters(spiky: TestClient) -> None:
    too_long = {"from": T0.isoformat(), "to": (T0 + timedelta(days=8)).isoformat()}
    assert (await spiky.get("/api/v1/query/activity_per_minute", params=too_long)).status == 400
    assert (await spiky.get("/api/v1/query/spikes", params={"metric": "nope", **FOUR_HOURS})).status == 400
    assert (await spiky.get("/api/v1/query/kpis", params={"from": "2026-03-02T14:00"})).status == 400  # naive


async def test_data_bounds(tiny: TestClient) -> None:
    (bounds,) = await rows(tiny, "data_bounds")
    assert bounds == {"first_minute": "2026-03-02T14:00:00", "last_minute": "2026-03-02T14:03:00"}
