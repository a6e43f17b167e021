"""AnalyticsStore without a database: one worker thread for every call, outages waited out, bad data not retried."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from libs.common.bus import Delivery
from libs.common.events.examples import examples
from services.analytics import store as store_module
from services.analytics.ingest import build_blocks
from services.analytics.store import AnalyticsStore


class FlakyClient:
    """Fails the first ``failures`` inserts with ``error``; records which thread ran each call."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.tokens: list[str] = []
        self.threads: set[str] = set()

    def insert(self, table: str, rows: list[Any], column_names: list[str], settings: dict[str, str]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.failures:
            self.failures -= 1
            raise self.error
        self.tokens.append(settings["insert_deduplication_token"])


def blocks() -> list:
    return build_blocks([Delivery(e, e.TOPIC, 0, i, e.to_bytes()) for i, e in enumerate(examples()[:2])])


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "OUTAGE_BACKOFF_S", (0.01, 0.02))


async def test_insert_waits_out_an_outage_on_the_store_thread() -> None:
    client = FlakyClient(2, OperationalError("connection refused"))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics-store")
    store = AnalyticsStore(client, "howhot", executor)  # type: ignore[arg-type]
    await store.insert_blocks(blocks())
    assert len(client.tokens) == 2
    assert len(client.threads) == 1 and next(iter(client.threads)).startswith("analytics-store")
    executor.shutdown()


async def test_outage_longer_than_the_budget_and_data_errors_are_raised() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    down = AnalyticsStore(FlakyClient(1000, OperationalError("down")), "howhot", executor, outage_budget_s=0.05)  # type: ignore[arg-type]
    with pytest.raises(OperationalError):
        await down.insert_blocks(blocks())
    bad_data = FlakyClient(1, DatabaseError("Cannot parse UUID"))
    with pytest.raises(DatabaseError):
        await AnalyticsStore(bad_data, "howhot", executor).insert_blocks(blocks())  # type: ignore[arg-type]
    assert bad_data.failures == 0 and bad_data.tokens == []  # one attempt: the consumer isolates the poison event
    executor.shutdown()
