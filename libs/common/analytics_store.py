"""The analytics store, always through clickhouse-connect: ``chdb:///path`` (embedded) or ``http(s)://`` (server).

Only the analytics service opens it (chDB allows one process per data directory); everything else reads through the
analytics service's query API. Migrations are plain SQL files under infra/clickhouse/, applied in order, idempotently,
and recorded in a ``schema_migrations`` table.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from libs.common.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "clickhouse"
_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def connect(settings: Settings) -> Client:
    """Open the analytics store named by the settings' DSN and make sure the database exists."""
    dsn = settings.clickhouse_dsn
    database = settings.clickhouse.database
    if not _DATABASE_NAME.match(database):
        raise ValueError(f"invalid ClickHouse database name: {database!r}")
    if dsn.startswith("chdb://"):
        Path(urlparse(dsn).path).mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=dsn)
    else:
        password = settings.clickhouse.password.get_secret_value() if settings.clickhouse.password else ""
        client = clickhouse_connect.get_client(dsn=dsn, username=settings.clickhouse.username, password=password)
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    return client


def _split_statements(sql: str) -> list[str]:
    """Split a migration file on semicolons at line ends (our migrations keep one statement per block)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


_VIEW_TO_TABLE = re.compile(
    r"^CREATE\s+MATERIALIZED\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+TO\s+(\S+)\s+AS\s+(SELECT\b.*)$",
    re.IGNORECASE | re.DOTALL,
)


def backfill_statement(statement: str) -> str | None:
    """For ``CREATE MATERIALIZED VIEW … TO target AS SELECT …``: ``INSERT INTO target SELECT …`` (the same SELECT).

    A view only sees rows inserted after it exists, so each one is followed by this backfill of the events already
    stored — written once, here, instead of a copy of every view's SELECT in the migration files. The rollups are
    built to absorb a re-run (uniq states, FINAL-deduplicated tables), so an interrupted migration can run again.
    """
    match = _VIEW_TO_TABLE.match(statement.strip())
    return f"INSERT INTO {match.group(1)}\n{match.group(2)}" if match else None


def migrate(client: Client, database: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every ``NNN_name.sql`` not yet applied, in order; returns the names applied now.

    Files may use ``{db}`` for the database name. Statements must be idempotent (IF NOT EXISTS), so a migration that
    was interrupted half-way can be re-run safely. Every materialized view with a ``TO`` table is backfilled from
    the events stored before it existed (``backfill_statement``).
    """
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done_sql = f"SELECT name FROM {database}.schema_migrations FINAL"  # noqa: S608 - database name validated
    done = {row[0] for row in client.query(done_sql).result_rows}
    applied: list[str] = []
    for path in sorted(migrations_dir.glob("*.sql")):
        if path.name in done:
            continue
        for statement in _split_statements(path.read_text().replace("{db}", database)):
            client.command(statement)
            backfill = backfill_statement(statement)
            if backfill:
                client.command(backfill)
        client.insert(f"{database}.schema_migrations", [[path.name]], column_names=["name"])
        applied.append(path.name)
        log.info("migration applied", extra={"migration": path.name})
    return applied


def query_rows(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a parameterized query and return rows as dicts (the query API's JSON shape)."""
    result = client.query(sql, parameters=parameters or {})
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
