"""AnalyticsStore without a database: one worker thread for every call, outages waited out, bad data not retried."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from libs.common.bus import ConsumerRunner, Delivery, RecordingPublisher
from libs.common.bus.consumer import _StopWhileWaiting
from libs.common.errors import TransientError
from libs.common.events.examples import examples
from libs.common.settings import KafkaSettings
from services.analytics import store as store_module
from services.analytics.consumer import batch_writer
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

    def raw_insert(self, table: str, column_names: list[str], data: bytes, settings: dict[str, str], fmt: str) -> None:
        self.insert(table, [], column_names, settings)


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


async def test_outage_longer_than_the_budget_is_transient_and_data_errors_are_raised() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    down = AnalyticsStore(FlakyClient(1000, OperationalError("down")), "howhot", executor, outage_budget_s=0.05)  # type: ignore[arg-type]
    with pytest.raises(TransientError) as raised:  # an outage, never the data's fault: the consumer waits it out
        await down.insert_blocks(blocks())
    assert isinstance(raised.value.__cause__, OperationalError)
    bad_data = FlakyClient(1, DatabaseError("Cannot parse UUID"))
    with pytest.raises(DatabaseError):
        await AnalyticsStore(bad_data, "howhot", executor).insert_blocks(blocks())  # type: ignore[arg-type]
    assert bad_data.failures == 0 and bad_data.tokens == []  # one attempt: the consumer isolates the poison event
    executor.shutdown()


async def test_an_outage_longer_than_the_budget_is_waited_out_by_the_consumer_never_dead_lettered() -> None:
    """Past the store's outage budget the consumer keeps waiting (and can be stopped) instead of retrying the batch as
    a handler bug and dead-lettering every healthy event of it."""
    executor = ThreadPoolExecutor(max_workers=1)
    client = FlakyClient(10**9, OperationalError("HTTPConnectionPool(host='clickhouse', port=8123): refused"))
    store = AnalyticsStore(client, "howhot", executor, outage_budget_s=0.05)  # type: ignore[arg-type]
    dlq = RecordingPublisher()
    runner = ConsumerRunner(KafkaSettings(bootstrap="127.0.0.1:1", retry_backoff_s=0.01, handler_retries=3),
                            group_id="analytics", topics=["photo.uploaded"], dlq_publisher=dlq,
                            batch_handler=batch_writer(store))
    deliveries = [Delivery(e, e.TOPIC, 0, i, e.to_bytes()) for i, e in enumerate(examples())]
    handling = asyncio.create_task(runner._handle(deliveries))  # what the loop does with a poll before committing
    try:
        for _ in range(40):  # 2 s: the old code had dead-lettered by then
            await asyncio.sleep(0.05)
            assert not handling.done(), f"the batch was given up: {handling}"
            assert dlq.raw == [] and runner.stats.dead_lettered == 0
        assert runner.stats.retries >= 2 and client.failures < 10**9 - 2  # still trying the store
        runner.stop()
        with pytest.raises(_StopWhileWaiting):  # stop ends the wait; the batch stays uncommitted
            await asyncio.wait_for(handling, 5)
        assert dlq.raw == [] and runner.stats.handled == 0
    finally:
        handling.cancel()
        executor.shutdown(wait=False)
