"""A simulated launch replayed through the real stack (Tansu → analytics on chDB), then the planted spikes looked up.

Scaled down from the seed (1M visitors in 12 h) by ``--visitors``; the timestamps are simulated (a compressed clock:
12 hours of launch are published as fast as Kafka takes them). Reports generation + publish time, ingest lag, and for
each planted spike the detected spike and its attribution.

    .venv/bin/python benchmarks/dashboard_launch_replay.py --visitors 100000 --hours 12
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from libs.common.broker import EmbeddedBroker
from libs.common.settings import AnalyticsSettings, CoreSettings, KafkaSettings, Settings
from services.analytics.app import create_app
from services.analytics.simulate.cli import add_arguments, simulate, summary

INGEST_WAIT_S = 1800.0
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


async def rows(client: TestClient, name: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/query/{name}", params=params)
    doc = await response.json()
    assert response.status == 200, doc
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="launch-replay-"))
    with EmbeddedBroker() as broker:
        settings = Settings(
            core=CoreSettings(data_dir=data_dir),
            kafka=KafkaSettings(bootstrap=broker.bootstrap, max_poll_records=10_000),
            analytics=AnalyticsSettings(batch_size=20_000, flush_interval_s=1.0),
        )
        sim_parser = argparse.ArgumentParser()
        add_arguments(sim_parser)
        args = sim_parser.parse_args([
            "--events-only", "--visitors", str(options.visitors), "--hours", str(options.hours),
            "--start", START.isoformat(), "--seed", str(options.seed), "--no-progress",
        ])
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            t0 = time.perf_counter()
            simulator, published, _ = await simulate(args, settings)
            publish_s = time.perf_counter() - t0
            print(summary(simulator.config, simulator.stats, published))
            launch = {"from": START.isoformat(), "to": (START + timedelta(hours=options.hours)).isoformat()}
            while True:
                stored = sum(int(r["events"]) for r in await rows(client, "event_counts", **launch))
                if stored >= (published or 0) or time.perf_counter() - t0 > INGEST_WAIT_S:
                    break
                await asyncio.sleep(2.0)
            ingest_s = time.perf_counter() - t0
            print(f"\ngenerated+published {published:,} events in {publish_s:.0f} s ({published / publish_s:,.0f}/s);"
                  f" all {stored:,} queryable after {ingest_s:.0f} s")
            t = time.perf_counter()
            spikes = await rows(client, "spikes", metric="evaluations", **launch)
            print(f"spikes query: {1000 * (time.perf_counter() - t):.0f} ms")
            for spike in spikes:
                print(f"  detected {spike['start'][11:16]}–{spike['end'][11:16]} peak {spike['peak_value']:.0f}/min"
                      f" (baseline {spike['baseline_at_peak']:.0f}): {spike['top_referrer']}"
                      f" {spike['top_referrer_pct']}%, utm {spike['top_utm_source']} {spike['top_utm_source_pct']}%")
        finally:
            await client.close()


if __name__ == "__main__":
    asyncio.run(main())
