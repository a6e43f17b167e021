"""The analytics store as the service sees it: clickhouse-connect (chdb:// or http://) behind ONE worker thread.

chDB is an in-process engine and the clickhouse-connect client is synchronous and not safe to share between threads,
so every call (connect, migrate, insert, query, close) runs on the same single-thread executor: the event loop never
blocks, and the store never sees two calls at once. A slow dashboard query therefore delays the next insert (and vice
versa); that is the price of one chDB process, and acceptable at one insert per second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from libs.common import analytics_store
from libs.common.settings import Settings
from services.analytics.ingest import EVENT_COLUMNS, EVENTS_TABLE, InsertBlock

log = logging.getLogger(__name__)

T = TypeVar("T")

# A store outage (server restarting, network blip) must not make the consumer's poison-message isolation dead-letter a
# whole healthy batch, so inserts wait it out here. Retrying is safe: blocks already written carry the same dedup
# token and are dropped. The budget stays well under Kafka's max_poll_interval (300 s) so the consumer keeps its group.
OUTAGE_BUDGET_S = 120.0
OUTAGE_BACKOFF_S = (0.5, 10.0)  # first and longest wait between attempts


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows (tuples) of one query, in ClickHouse's order."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class EventStore(Protocol):
    """What the consumer and the query API need; the real store and test fakes both provide it."""

    database: str

    async def insert_blocks(self, blocks: Sequence[InsertBlock]) -> None: ...

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult: ...

    async def ping(self) -> bool: ...


class AnalyticsStore:
    """The clickhouse-connect client plus the one thread allowed to use it. Build with ``await AnalyticsStore.open``."""

    def __init__(
        self, client: Client, database: str, executor: ThreadPoolExecutor, outage_budget_s: float = OUTAGE_BUDGET_S
    ) -> None:
        self._client = client
        self.database = database
        self._executor = executor
        self.outage_budget_s = outage_budget_s

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> AnalyticsStore:
        """Connect (creating the database) and apply pending migrations, all on the store's own thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-store")
        database = settings.clickhouse.database
        loop = asyncio.get_running_loop()

        def connect() -> Client:
            client = analytics_store.connect(settings)
            if migrate:
                applied = analytics_store.migrate(client, database)
                log.info("analytics store ready", extra={"dsn": settings.clickhouse_dsn, "migrations": applied})
            return client

        try:
            client = await loop.run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(client, database, executor)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def insert_blocks(self, blocks: Sequence[InsertBlock]) -> None:
        """Insert each block with its own deduplication token (a retried batch is dropped by ClickHouse)."""
        table = f"{self.database}.{EVENTS_TABLE}"

        def insert_all() -> None:
            for block in blocks:
                self._client.insert(
                    table,
                    block.rows,
                    column_names=list(EVENT_COLUMNS),
                    settings={"insert_deduplication_token": block.dedup_token},
                )

        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.outage_budget_s
        delay, longest = OUTAGE_BACKOFF_S
        while True:
            try:
                await self._run(insert_all)
                return
            except OperationalError as exc:  # connection-level: the store is unreachable, not the data bad
                if loop.time() + delay > give_up_at:
                    raise
                log.warning("analytics store unreachable; retrying the insert", extra={"error": str(exc)[:300]})
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult:
        """Run a read query with server-side bound parameters (never string-formatted into the SQL)."""

        def run_query() -> QueryResult:
            result = self._client.query(sql, parameters=parameters)
            return QueryResult(list(result.column_names), [tuple(row) for row in result.result_rows])

        return await self._run(run_query)

    async def ping(self) -> bool:
        """True if the store answers a trivial query (the /healthz check)."""
        try:
            result = await self._run(lambda: self._client.query("SELECT 1").result_rows)
        except Exception:  # any failure means unhealthy; the reason is logged
            log.warning("analytics store ping failed", exc_info=True)
            return False
        return result == [(1,)]

    async def close(self) -> None:
        """Close the client on its own thread, then stop the thread (releases chDB's lock on the data directory)."""
        try:
            await self._run(self._client.close)
        finally:
            self._executor.shutdown(wait=True)
