"""The real analytics query API over a chDB store of its own, served from a background thread.

For the dashboard's AppTest and browser tests, the benchmark, and dashboard development without the whole stack:
``python -m services.analytics.dashboard_app.devserver --seed tiny`` serves a seeded store and prints its URL
(then ``HOWHOT_ANALYTICS_API_URL=<url> streamlit run services/analytics/dashboard.py``). The data goes in through the
real ingest path (build_blocks → AnalyticsStore.insert_blocks), so the migrations' views fill exactly as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from libs.common.events import Event
from libs.common.netutil import LOOPBACK, free_port
from libs.common.settings import AnalyticsSettings, ClickHouseSettings, CoreSettings, Settings
from services.analytics.app import create_app
from services.analytics.ingest import build_blocks
from services.analytics.simulate.seeded import as_deliveries, steady_with_spike, tiny_launch
from services.analytics.store import AnalyticsStore

STARTUP_TIMEOUT_S = 60.0  # opening chDB and applying migrations takes a few seconds on a busy machine
INSERT_CHUNK = 20_000  # events per insert: bounded memory for big seeds


class QueryApiServer:
    """``start()`` opens the store, inserts ``events`` and serves the API on a free loopback port; ``stop()`` closes
    everything (and releases chDB's lock on the directory)."""

    def __init__(
        self, data_dir: Path, events: Sequence[Event] = (), *, token: str | None = None, database: str = "howhot"
    ) -> None:
        self.port = free_port()
        self.settings = Settings(
            core=CoreSettings(data_dir=data_dir),
            clickhouse=ClickHouseSettings(database=database),
            analytics=AnalyticsSettings(host=LOOPBACK, port=self.port,
                                        dashboard_token=SecretStr(token) if token else None),
        )
        self._events = list(events)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="query-api", daemon=True)
        self._runner: web.AppRunner | None = None
        self._store: AnalyticsStore | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _call(self, coro: object) -> object:
        future: Future[object] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout=STARTUP_TIMEOUT_S)

    async def _start(self) -> None:
        self._store = await AnalyticsStore.open(self.settings)
        await self.insert(self._events)
        self._runner = web.AppRunner(create_app(self.settings, store=self._store, consume=False))
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def insert(self, events: Sequence[Event]) -> None:
        assert self._store is not None
        for offset in range(0, len(events), INSERT_CHUNK):
            chunk = list(events[offset : offset + INSERT_CHUNK])
            await self._store.insert_blocks(build_blocks(as_deliveries(chunk, first_offset=offset)))

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._store is not None:
            await self._store.close()

    def start(self) -> QueryApiServer:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=STARTUP_TIMEOUT_S)

    def __enter__(self) -> QueryApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


SEEDS = {
    "none": lambda t0: [],
    "tiny": lambda t0: tiny_launch(t0)[0],
    "spike": steady_with_spike,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", choices=sorted(SEEDS), default="tiny")
    parser.add_argument("--data-dir", type=Path, default=Path(".howhot") / "devserver")  # .howhot/ is git-ignored
    parser.add_argument("--token")
    args = parser.parse_args(argv)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=4)
    with QueryApiServer(args.data_dir, SEEDS[args.seed](t0), token=args.token) as server:
        print(f"query API with seed {args.seed!r}: {server.url}  (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
