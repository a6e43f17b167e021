"""A simulated launch replayed into the analytics store, then the dashboard's panels and the planted spikes looked up.

Two paths, the same simulator and the same analytics code:

* through Kafka (default): ``--events-only`` publishes into an embedded Tansu broker and the real analytics app
  consumes and ingests into chDB; what the stack does in production, bounded by ingestion (~13k events/s here).
* ``--direct``: the simulator's events go through the analytics ingest code (``build_blocks``: the same rows and
  dedup tokens the consumer builds) straight into the store, skipping only the broker and the consumer loop. It shows
  the dashboard at the seed's full scale (1M visitors / 12 h) when a Kafka replay of it would not fit the time.

Timestamps are simulated (a compressed clock: 12 hours of launch replayed as fast as the machine goes). Reports
generation + write time, ingest lag, every panel's latency on the result, and for each planted spike the detected
spike and its attribution.

    .venv/bin/python benchmarks/dashboard_launch_replay.py --visitors 100000 --hours 12
    .venv/bin/python benchmarks/dashboard_launch_replay.py --visitors 1000000 --hours 12 --direct \
        --data-dir /tmp/dash/replay1m
    .venv/bin/python benchmarks/dashboard_launch_replay.py --visitors 1000000 --reuse --data-dir /tmp/dash/replay1m
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from libs.common.broker import EmbeddedBroker
from libs.common.bus import Delivery
from libs.common.events import Event
from libs.common.settings import AnalyticsSettings, CoreSettings, KafkaSettings, Settings
from services.analytics.app import create_app
from services.analytics.ingest import build_blocks
from services.analytics.simulate.cli import add_arguments, config_from_args, simulate, summary
from services.analytics.simulate.generator import LaunchSimulator
from services.analytics.store import AnalyticsStore

INGEST_WAIT_S = 1800.0
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
DIRECT_BATCH_EVENTS = 50_000  # events per insert round in --direct: the consumer's batches are 10–20k, bigger is fewer
PANELS = ("kpis", "activity_per_minute", "spikes", "spike_sources", "funnel", "stage_latency", "age_histogram",
          "gender_split", "attractiveness_by_group", "hot_ratings_by_gender", "traffic_sources")


async def rows(client: TestClient, name: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/query/{name}", params=params)
    doc = await response.json()
    assert response.status == 200, doc
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


class DirectWriter:
    """Turns simulated events into consumer deliveries (per-topic offsets, one partition) and inserts them through
    ``build_blocks`` in rounds of DIRECT_BATCH_EVENTS, overlapping generation with the previous round's insert."""

    def __init__(self, store: AnalyticsStore) -> None:
        self._store = store
        self._offsets: Counter[str] = Counter()
        self._pending: list[Delivery] = []
        self._insert: asyncio.Task[None] | None = None
        self.written = 0

    async def add(self, events: list[Event]) -> None:
        for event in events:
            topic = event.TOPIC
            self._pending.append(Delivery(event=event, topic=topic, partition=0, offset=self._offsets[topic],
                                          raw=event.to_bytes()))
            self._offsets[topic] += 1
        if len(self._pending) >= DIRECT_BATCH_EVENTS:
            await self._flush()

    async def _flush(self) -> None:
        if self._insert is not None:
            await self._insert
        batch, self._pending = self._pending, []
        self.written += len(batch)
        self._insert = asyncio.create_task(self._store.insert_blocks(build_blocks(batch)))

    async def close(self) -> None:
        await self._flush()
        if self._insert is not None:
            await self._insert


async def replay_direct(options: argparse.Namespace, data_dir: Path) -> None:
    """Generate the launch and write it through the ingest code into a store served by the real query API."""
    settings = Settings(core=CoreSettings(data_dir=data_dir))
    store = await AnalyticsStore.open(settings)
    client = TestClient(TestServer(create_app(settings, store=store, consume=False)))
    await client.start_server()
    try:
        if options.reuse:  # the store holds the launch already: only the panels and the spikes again
            for spike in config_from_args(_simulator_args(options)).planned_spikes():
                print(f"  planted {spike.at_h:g} h after the start: {spike.domain} utm={spike.utm_source or '-'}"
                      f" {spike.visitors:,} visitors")
            await report(client, options)
            return
        simulator = LaunchSimulator(config_from_args(_simulator_args(options)))
        writer = DirectWriter(store)
        t0 = time.perf_counter()
        for minute, events in simulator.minutes():
            await writer.add(events)
            if options.progress and minute % 60 == 0:
                print(f"  simulated hour {minute // 60}: {writer.written:,} events written after"
                      f" {time.perf_counter() - t0:.0f} s", flush=True)
        await writer.close()
        write_s = time.perf_counter() - t0
        print(summary(simulator.config, simulator.stats, writer.written))
        print(f"\ngenerated+written {writer.written:,} events in {write_s:.0f} s ({writer.written / write_s:,.0f}/s)"
              " through build_blocks → AnalyticsStore.insert_blocks (no broker)")
        await report(client, options)
    finally:
        await client.close()
        await store.close()


async def replay_kafka(options: argparse.Namespace, data_dir: Path) -> None:
    """Publish the launch into an embedded broker and let the real analytics app consume it."""
    with EmbeddedBroker() as broker:
        settings = Settings(
            core=CoreSettings(data_dir=data_dir),
            kafka=KafkaSettings(bootstrap=broker.bootstrap, max_poll_records=10_000),
            analytics=AnalyticsSettings(batch_size=20_000, flush_interval_s=1.0),
        )
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            t0 = time.perf_counter()
            simulator, published, _ = await simulate(_simulator_args(options), settings)
            publish_s = time.perf_counter() - t0
            print(summary(simulator.config, simulator.stats, published))
            launch = _launch(options)
            while True:
                stored = sum(int(r["events"]) for r in await rows(client, "event_counts", **launch))
                if stored >= (published or 0) or time.perf_counter() - t0 > INGEST_WAIT_S:
                    break
                await asyncio.sleep(2.0)
            ingest_s = time.perf_counter() - t0
            print(f"\ngenerated+published {published:,} events in {publish_s:.0f} s ({published / publish_s:,.0f}/s);"
                  f" all {stored:,} queryable after {ingest_s:.0f} s")
            await report(client, options)
        finally:
            await client.close()


def _simulator_args(options: argparse.Namespace) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([
        "--events-only", "--visitors", str(options.visitors), "--hours", str(options.hours),
        "--start", START.isoformat(), "--seed", str(options.seed), "--no-progress",
    ])


def _launch(options: argparse.Namespace) -> dict[str, str]:
    return {"from": START.isoformat(), "to": (START + timedelta(hours=options.hours)).isoformat()}


async def report(client: TestClient, options: argparse.Namespace) -> None:
    """Every panel's latency through the query API (first call and a repeat), the KPIs, and the spikes found."""
    launch = _launch(options)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| panel | first ms | repeat ms |\n|---|---:|---:|")
    for name in PANELS:
        params = {**launch, "metric": "evaluations"} if name in ("activity_per_minute", "spikes",
                                                                 "spike_sources") else launch
        times = []
        for _ in range(2):
            t = time.perf_counter()
            await rows(client, name, **params)
            times.append(1000 * (time.perf_counter() - t))
        print(f"| {name} | {times[0]:.0f} | {times[1]:.0f} |")
    (kpis,) = await rows(client, "kpis", **launch)
    print("kpis: " + ", ".join(f"{k}={v}" for k, v in kpis.items()))
    for spike in await rows(client, "spikes", metric="evaluations", **launch):
        print(f"  detected {spike['start'][11:16]}–{spike['end'][11:16]} peak {spike['peak_value']:.0f}/min"
              f" (baseline {spike['baseline_at_peak']:.0f}): {spike['top_referrer']}"
              f" {spike['top_referrer_pct']}%, utm {spike['top_utm_source']} {spike['top_utm_source_pct']}%")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--direct", action="store_true", help="write through the ingest code, without Kafka")
    parser.add_argument("--data-dir", type=Path, default=None, help="the chDB store (default: a new temp dir)")
    parser.add_argument("--progress", action="store_true", help="print progress every simulated hour (--direct)")
    parser.add_argument("--reuse", action="store_true", help="report on an already replayed --data-dir")
    options = parser.parse_args()
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="launch-replay-"))
    print(f"store: {data_dir}")
    await (replay_direct if options.direct or options.reuse else replay_kafka)(options, data_dir)


if __name__ == "__main__":
    asyncio.run(main())
