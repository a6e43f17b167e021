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
from libs.common.errors import TransientError
from libs.common.settings import Settings, redact_url
from services.analytics.ingest import EVENT_COLUMNS, EVENTS_TABLE, InsertBlock
from services.analytics.ingest_rowbinary import (
    ROWBINARY_COLUMNS,
    ROWBINARY_FORMAT,
    RowBinaryBlock,
    batch_dedup_token,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# A store outage (server restarting, network blip) must not make the consumer's poison-message isolation dead-letter a
# whole healthy batch, so inserts wait it out here. Retrying is safe: blocks already written carry the same dedup
# token and are dropped. The budget stays well under Kafka's max_poll_interval (300 s) so the consumer keeps its group;
# past it the write raises TransientError, which the consumer waits out without limit — never dead-letters.
OUTAGE_BUDGET_S = 120.0
OUTAGE_BACKOFF_S = (0.5, 10.0)  # first and longest wait between attempts

AnyInsertBlock = InsertBlock | RowBinaryBlock
"""Tuple rows (serialized by clickhouse-connect) or rows already encoded as RowBinary (the consumer's fast path)."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows (tuples) of one query, in ClickHouse's order."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


class EventStore(Protocol):
    """What the consumer and the query API need; the real store and test fakes both provide it."""

    database: str

    async def insert_blocks(self, blocks: Sequence[AnyInsertBlock]) -> None: ...

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult: ...

    async def command(self, sql: str, parameters: dict[str, Any]) -> None: ...

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
                log.info("analytics store ready", extra={"dsn": redact_url(settings.clickhouse_dsn),
                                                                 "migrations": applied})
            return client

        try:
            client = await loop.run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(client, database, executor)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def insert_blocks(self, blocks: Sequence[AnyInsertBlock]) -> None:
        """Insert the blocks with deduplication tokens (a retried batch is dropped by ClickHouse).

        Encoded blocks go in as ONE insert under the token of their combination: every insert into ``events`` runs
        each materialized view of migrations 002-006 and writes a part per target table, ~50-100 ms of CPU however
        few its rows, so one insert per (topic, partition) — up to 30 per batch — cost more than the rows themselves.
        Tuple-row blocks keep one insert and token each.
        """
        table = f"{self.database}.{EVENTS_TABLE}"
        encoded = [block for block in blocks if isinstance(block, RowBinaryBlock)]

        def insert_all() -> None:
            if encoded:
                self._client.raw_insert(
                    table,
                    list(ROWBINARY_COLUMNS),
                    b"".join(row for block in encoded for row in block.rows),
                    settings={"insert_deduplication_token": batch_dedup_token(encoded)},
                    fmt=ROWBINARY_FORMAT,
                )
            for block in blocks:
                if isinstance(block, InsertBlock):
                    token = {"insert_deduplication_token": block.dedup_token}
                    self._client.insert(table, block.rows, column_names=list(EVENT_COLUMNS), settings=token)

        await self._run_through_outages(insert_all, "insert")

    async def _run_through_outages(self, fn: Callable[[], T], what: str) -> T:
        """Run a write on the store's thread, waiting out connection-level failures for ``outage_budget_s``, then
        raising ``TransientError`` (the consumer keeps waiting, with backoff, and can still be stopped meanwhile).

        Only writes that are safe to repeat come here: inserts carry deduplication tokens, deletes match nothing the
        second time.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.outage_budget_s
        delay, longest = OUTAGE_BACKOFF_S
        while True:
            try:
                return await self._run(fn)
            except OperationalError as exc:  # connection-level: the store is unreachable, not the data bad
                if loop.time() + delay > give_up_at:
                    # an outage, not bad data: the consumer waits (without limit, reacting to stop) and never
                    # dead-letters healthy events for it (libs/common/errors.py)
                    raise TransientError(
                        f"analytics store unreachable for {self.outage_budget_s:g} s ({what}): {exc}"
                    ) from exc
                log.warning(
                    "analytics store unreachable; retrying", extra={"statement": what, "error": str(exc)[:300]}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult:
        """Run a read query with server-side bound parameters (never string-formatted into the SQL)."""

        def run_query() -> QueryResult:
            result = self._client.query(sql, parameters=parameters)
            return QueryResult(list(result.column_names), [tuple(row) for row in result.result_rows])

        return await self._run(run_query)

    async def command(self, sql: str, parameters: dict[str, Any]) -> None:
        """Run a statement that returns no rows (the photo deletions' DELETEs), parameters bound server-side.

        Retried through store outages like inserts: the statements sent here are idempotent.
        """
        await self._run_through_outages(
            lambda: self._client.command(sql, parameters=parameters), sql.split(" WHERE ", 1)[0][:120]
        )

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
