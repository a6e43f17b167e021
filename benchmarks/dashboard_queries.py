"""Dashboard query latency on chDB at N events: every panel's named query, p50/p95 over repeats.

Rows are generated inside ClickHouse (INSERT … SELECT FROM numbers()) into a temporary store, so the materialized
views of infra/clickhouse/002–004 fill exactly as they do on ingest (in 45 insert rounds at 10M, so the rollup tables
are left in several parts, as a live store's are between background merges). The shape per "photo" i: 2 page views,
the upload (referrer mix, one press spike of 10 % of the photos in 20 minutes at hour 4), face detection, scoring
(93 %, one face), a card, a share (30 %), share views (80 %) and a rating: ~8 events per photo over 12 hours. Visitor
i rates photo i - 1's face 0, and the rating carries the genders the upload API would give it: the rated face's and
face 0 of the rater's own photo i (each null when that photo was not scored), so the hot-ratings panel of 006 and the
joins it replaced answer the same (--baseline checks it).

    .venv/bin/python benchmarks/dashboard_queries.py --events 1000000 --repeats 5
    .venv/bin/python benchmarks/dashboard_queries.py --events 10000000 --repeats 10 --data-dir /tmp/dash/bench10m_final
    .venv/bin/python benchmarks/dashboard_queries.py --repeats 10 --data-dir /tmp/dash/bench10m_final --reuse
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from libs.common.settings import CoreSettings, Settings
from services.analytics.queries import QUERIES, NamedQuery
from services.analytics.store import AnalyticsStore

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOURS = 12
EVENTS_PER_PHOTO = 8  # see the module docstring
SETTLE_MAX_S = 400.0  # merges of 10M fresh rows take a minute or two on two cores, forced ones start after 120 s
FORCE_MERGED = ("photo_stages", "upload_sources", "hour_visitors", "minute_counts", "scored_faces", "shares",
                "rating_genders")
CHUNK_PHOTOS = 250_000  # photos per INSERT round: bounds chDB's memory on a small machine
PANELS = (  # what one dashboard refresh runs
    "data_bounds", "kpis", "activity_per_minute", "spikes", "spike_sources", "funnel", "stage_latency",
    "age_histogram", "gender_split", "attractiveness_by_group", "hot_ratings_by_gender", "traffic_sources",
)

_T = f"toDateTime64('{START:%Y-%m-%d %H:%M:%S}', 3, 'UTC')"
# Seconds into the launch for photo i: spread evenly, except every 10th photo lands in the 20-minute spike at hour 4.
_AT = f"if(i % 10 = 0, 4 * 3600 + (i % 1200), (i * {HOURS * 3600}) / @PHOTOS@)"
_PHOTO = "concat('photo', leftPad(toString(i), 15, '0'))"
_VISITOR = "concat('visitor', leftPad(toString(i), 13, '0'))"
_SHARE = "concat('share', leftPad(toString(i), 15, '0'))"
_REF = ("if(i % 10 = 0, 'https://www.news.example.com/a', "
        "arrayElement(['', 'https://www.google.com/', 'https://t.co/', 'https://www.facebook.com/'], i % 4 + 1))")
_UTM = "if(i % 10 = 0, 'press', '')"
_COLS = "event_id, type, occurred_at, photo_id, visitor_id, share_id, payload, topic, partition, offset, ingested_at"


def _insert(db: str, type_: str, at: str, photo: str, visitor: str, share: str, payload: str, where: str) -> str:
    return (
        f"INSERT INTO {db}.events ({_COLS}) SELECT generateUUIDv4(i), '{type_}',"
        f" {_T} + toIntervalMillisecond(toInt64(1000 * ({at}))), {photo}, {visitor}, {share}, {payload},"
        f" '{type_}', 0, i, now64(3) FROM (SELECT number AS i FROM numbers(@LO@, @N@)) WHERE {where}"
    )


def statements(db: str) -> list[str]:
    scored = ("concat('{\"faces\":[{\"index\":0,\"age\":', toString(16 + i % 50), ',\"gender\":\"',"
              " if(i % 2 = 0, 'female', 'male'), '\",\"attractiveness\":', if(16 + i % 50 < 18, 'null',"
              " toString(3 + (i % 60) / 10)), '}]}')")
    upload = f"concat('{{\"attribution\":{{\"referrer\":\"', {_REF}, '\",\"utm_source\":\"', {_UTM}, '\"}}}}')"
    rated = "greatest(i, 1) - 1"  # the photo visitor i rates

    def gender(photo: str) -> str:  # face 0's gender as the JSON value of a rating, null when it was never scored
        return f"if(({photo}) % 100 < 93, if(({photo}) % 2 = 0, '\"female\"', '\"male\"'), 'null')"

    rating = ("concat('{\"face_index\":0,\"scale\":\"hot_or_not\",\"rating\":', toString(i % 2),"
              f" ',\"rated_gender\":', {gender(rated)}, ',\"rater_gender\":', {gender('i')}, '}}')")
    return [
        _insert(db, "page.viewed", f"{_AT} - 30", "''", _VISITOR, "''", "'{}'", "1"),
        _insert(db, "page.viewed", f"{_AT} + 300", "''", _VISITOR, "''", "'{}'", "1"),
        _insert(db, "photo.uploaded", _AT, _PHOTO, _VISITOR, "''", upload, "1"),
        _insert(db, "faces.detected", f"{_AT} + 0.6", _PHOTO, "''", "''", "'{\"faces\":[{}]}'", "i % 100 < 93"),
        _insert(db, "photo.scored", f"{_AT} + 1.1", _PHOTO, "''", "''", scored, "i % 100 < 93"),
        _insert(db, "card.rendered", f"{_AT} + 1.3", _PHOTO, "''", "''", "'{}'", "i % 100 < 93"),
        _insert(db, "photo.shared", f"{_AT} + 40", _PHOTO, _VISITOR, _SHARE, "'{}'", "i % 10 < 3"),
        _insert(db, "share.viewed", f"{_AT} + 600", _PHOTO, "concat('viewer', toString(i))", _SHARE, "'{}'",
                "i % 10 < 8"),
        _insert(db, "rating.submitted", f"{_AT} + 120", f"concat('photo', leftPad(toString({rated}), 15, '0'))",
                _VISITOR, "''", rating, "1"),
    ]


async def settle(store: AnalyticsStore, wait_for_forced_merges: bool) -> float:
    """Wait (bounded) until no merge is running and, unless told not to, until the tables 004 force-merges are down to
    one part per partition (their steady state between two inserts; see 004_panel_rollups.sql)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < SETTLE_MAX_S:
        (running,) = (await store.query("SELECT count() FROM system.merges", {})).rows[0]
        (split,) = (await store.query(
            "SELECT count() FROM (SELECT table, partition FROM system.parts WHERE active AND database = {db:String}"
            " AND table IN {tables:Array(String)} GROUP BY table, partition HAVING count() > 1)",
            {"db": store.database, "tables": list(FORCE_MERGED)})).rows[0]
        if running == 0 and (split == 0 or not wait_for_forced_merges):
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - t0


def load_registry(path: Path) -> dict[str, NamedQuery]:
    """The QUERIES of another copy of queries.py: an A/B on the same store, at the same time, under the same load."""
    spec = importlib.util.spec_from_file_location("baseline_queries", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module.QUERIES


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="query an already loaded --data-dir (no insert)")
    parser.add_argument("--start", type=datetime.fromisoformat, default=START,
                        help="the range's start for --reuse of another store (a replay starts at 06:00)")
    parser.add_argument("--hours", type=float, default=HOURS, help="the range's length in hours")
    parser.add_argument("--no-settle", action="store_true",
                        help="query right after loading, before the forced merges of 004 (more parts per table)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="QUERIES_PY",
                        help="also time another version of queries.py (e.g. `git show HEAD~1:services/analytics/"
                             "queries.py`), interleaved with the current one, and check both answer the same")
    args = parser.parse_args()
    photos = max(args.events // EVENTS_PER_PHOTO, 1)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    store = await AnalyticsStore.open(Settings(core=CoreSettings(data_dir=data_dir)))
    db = store.database
    t0 = time.perf_counter()
    for lo in range(0, 0 if args.reuse else photos, CHUNK_PHOTOS):
        n = min(CHUNK_PHOTOS, photos - lo)
        for sql in statements(db):
            await store.query(sql.replace('@LO@', str(lo)).replace('@N@', str(n)).replace('@PHOTOS@', str(photos)), {})
    load_s = time.perf_counter() - t0
    (count,) = (await store.query(f"SELECT count() FROM {db}.events", {})).rows[0]
    print(f"reused {count:,} events in {data_dir}" if args.reuse
          else f"loaded {count:,} events ({photos:,} photos) in {load_s:.0f} s into {data_dir}")
    settle_s = await settle(store, not args.no_settle)
    print(f"background merges settled after {settle_s:.0f} s (a live store merges continuously: between forced"
          " merges, the last two minutes of inserts sit in a few small parts)")
    parts = await store.query(
        "SELECT table, count(), sum(rows) FROM system.parts WHERE active AND database = {db:String}"
        " GROUP BY table ORDER BY table", {"db": db})
    print("parts (rows): " + ", ".join(f"{table} {n} ({rows:,})" for table, n, rows in parts.rows))
    print(f"load average before the queries: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    params = {"from": args.start.isoformat(), "to": (args.start + timedelta(hours=args.hours)).isoformat()}
    registries = {"": QUERIES}
    if args.baseline:
        registries = {"baseline ": load_registry(args.baseline), "": QUERIES}
    print("| panel query | " + " | ".join(f"{tag}p50 ms | {tag}p95 ms" for tag in registries)
          + " | rows |\n|---|" + "---:|---:|" * len(registries) + "---:|")
    totals: dict[str, list[float]] = {tag: [] for tag in registries}
    for name in PANELS:
        raw = {} if name == "data_bounds" else dict(params)
        times: dict[str, list[float]] = {tag: [] for tag in registries}
        answers: dict[str, list[tuple[object, ...]]] = {}
        for repeat in range(args.repeats):  # interleaved, alternating who goes first: load hits both alike
            order = list(registries.items())
            for tag, registry in order if repeat % 2 == 0 else order[::-1]:
                query = registry[name]
                bound = query.params.model_validate(raw).bind()
                t = time.perf_counter()
                answers[tag] = (await store.query(query.render(db), bound)).rows
                times[tag].append((time.perf_counter() - t) * 1000)
        cells = []
        for tag, spent in times.items():
            spent.sort()
            totals[tag].append(statistics.median(spent))
            p95 = spent[min(len(spent) - 1, round(0.95 * (len(spent) - 1)))]
            cells.append(f"{statistics.median(spent):.0f} | {p95:.0f}")
        same = "" if len({repr(a) for a in answers.values()}) == 1 else " (ANSWERS DIFFER)"
        print(f"| {name} | " + " | ".join(cells) + f" | {len(answers[''])}{same} |")
    print("| whole refresh (sum of medians) | " + " | ".join(f"{sum(t):.0f} | " for t in totals.values()) + " |")
    print(f"load average after the queries: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
