"""The simulator feeds a real stack (Tansu → the analytics app on chDB) and the spike query finds what it planted.

A two-hour launch with two press spikes, published with ``--events-only`` in simulated time. Once every generated
event is queryable, the ``spikes`` query over the launch must report exactly the planted spikes, each starting
within minutes of its planted time and attributed to its planted referrer and utm_source.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from libs.common.broker import EmbeddedBroker
from libs.common.bus import ensure_topics
from libs.common.settings import AnalyticsSettings, CoreSettings, KafkaSettings, Settings
from services.analytics.app import create_app
from services.analytics.simulate.cli import add_arguments, simulate, summary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOURS = 2
SPIKES = ("0.75:news.example.com:1500:press:8", "1.5:tv.example.net:1500::8")
PLANTED = [(START + timedelta(minutes=45), "news.example.com", "press"),
           (START + timedelta(minutes=90), "tv.example.net", "(none)")]
DETECTION_SLACK = timedelta(minutes=5)  # uploads follow a landing by 8–90 s, the pipeline by ~1 s
INGEST_WAIT_S = 240.0  # ~40k events through Tansu and the consumer on a shared 2-core machine
POLL_S = 1.0


async def rows(client: TestClient, name: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/query/{name}", params=params)
    assert response.status == 200, await response.text()
    doc = await response.json()
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


async def test_planted_spikes_are_found_and_attributed(kafka_broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = Settings(
        core=CoreSettings(data_dir=tmp_path),
        kafka=KafkaSettings(bootstrap=kafka_broker.bootstrap, max_poll_records=5_000),
        analytics=AnalyticsSettings(batch_size=10_000, flush_interval_s=0.5),
    )
    await ensure_topics(settings.kafka)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    spike_args = [arg for spike in SPIKES for arg in ("--spike", spike)]
    args = parser.parse_args([
        "--events-only", "--visitors", "8000", "--hours", str(HOURS), "--start", START.isoformat(), "--seed", "3",
        "--no-progress", *spike_args,
    ])
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        simulator, published, _ = await simulate(args, settings)
        print(summary(simulator.config, simulator.stats, published))
        launch = {"from": START.isoformat(), "to": (START + timedelta(hours=HOURS)).isoformat()}

        deadline = asyncio.get_running_loop().time() + INGEST_WAIT_S
        while True:
            stored = sum(int(r["events"]) for r in await rows(client, "event_counts", **launch))
            if stored == published:
                break
            assert asyncio.get_running_loop().time() < deadline, f"only {stored} of {published} events ingested"
            await asyncio.sleep(POLL_S)

        spikes = await rows(client, "spikes", metric="evaluations", **launch)
        found = [(datetime.fromisoformat(s["start"]).replace(tzinfo=UTC), s["top_referrer"], s["top_utm_source"])
                 for s in spikes]
        assert len(found) == len(PLANTED), spikes
        for (start, referrer, utm), (planted_at, planted_referrer, planted_utm) in zip(found, PLANTED, strict=True):
            assert planted_at <= start <= planted_at + DETECTION_SLACK, (start, planted_at)
            assert (referrer, utm) == (planted_referrer, planted_utm)
        (kpis,) = await rows(client, "kpis", **launch)
        assert kpis["photos"] == simulator.stats.events["photo.uploaded"]
        assert kpis["evaluations"] == simulator.stats.faces_scored
    finally:
        await client.close()
