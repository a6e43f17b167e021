"""MicroBatcher: batching by size and by time, one-to-one results, failures isolated by bisection, sync fns off-loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from libs.common.batching import BatcherClosed, MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_full_batch_runs_without_waiting_and_results_map_one_to_one() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(list(items))
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = MicroBatcher(double, max_batch=4, max_wait_ms=10_000)
        started = time.monotonic()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        assert time.monotonic() - started < 1.0  # never waited for the 10 s timer
        await batcher.close()
        return list(results)

    assert run(main()) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_partial_batch_runs_after_max_wait() -> None:
    async def identity(items: list[str]) -> list[str]:
        return items

    async def main() -> float:
        batcher = MicroBatcher(identity, max_batch=100, max_wait_ms=50)
        started = time.monotonic()
        assert await asyncio.gather(batcher.submit("a"), batcher.submit("b")) == ["a", "b"]
        elapsed = time.monotonic() - started
        assert batcher.batches_run == 1
        await batcher.close()
        return elapsed

    elapsed = run(main())
    assert 0.04 <= elapsed < 1.0


def test_failure_of_every_item_is_delivered_to_every_waiter_and_worker_survives() -> None:
    broken = True

    def failing(items: list[int]) -> list[int]:
        if broken:
            raise ValueError("boom")
        return items

    async def main() -> None:
        nonlocal broken
        batcher = MicroBatcher(failing, max_batch=3, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        # bisection: [0, 1, 2] -> [0] and [1, 2] -> [1] and [2]; every call is counted
        assert batcher.batches_run == 5
        assert batcher.items_run == 3 + 1 + 2 + 1 + 1
        broken = False
        assert await batcher.submit(7) == 7  # the next batch works
        await batcher.close()

    run(main())


def test_poison_item_fails_alone_and_the_rest_of_its_batch_gets_results(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[list[int]] = []

    def double_unless_three(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 3 in items:
            raise ValueError("degenerate landmarks")
        return [2 * i for i in items]

    async def main() -> list[object]:
        batcher = MicroBatcher(double_unless_three, max_batch=6, max_wait_ms=1000)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
        await batcher.close()
        return list(results)

    with caplog.at_level(logging.WARNING, logger="libs.common.batching"):
        results = run(main())
    assert results[:3] == [0, 2, 4]
    assert isinstance(results[3], ValueError) and str(results[3]) == "degenerate landmarks"
    assert results[4:] == [8, 10]
    assert calls[0] == [0, 1, 2, 3, 4, 5]  # they did share one batch
    assert calls[1:] == [[0, 1, 2], [3, 4, 5], [3], [4, 5]]
    assert any("isolate" in r.getMessage() for r in caplog.records)


def test_item_submitted_during_a_running_batch_waits_max_wait_from_its_submit() -> None:
    async def main() -> None:
        batch_ended = 0.0

        async def slow_first(items: list[str]) -> list[str]:
            nonlocal batch_ended
            if "a" in items:
                await asyncio.sleep(0.3)
                batch_ended = time.monotonic()
            return items

        batcher = MicroBatcher(slow_first, max_batch=2, max_wait_ms=250)
        first = asyncio.gather(batcher.submit("a"), batcher.submit("b"))  # full: runs at once, takes 0.3 s
        await asyncio.sleep(0.05)
        submitted = time.monotonic()
        assert await batcher.submit("c") == "c"  # queued while [a, b] runs; its 250 ms are over when it ends
        done = time.monotonic()
        assert await first == ["a", "b"]
        assert done - batch_ended < 0.15  # the old code waited another full 250 ms after the slow batch
        assert done - submitted < 0.25 + 0.15
        assert batcher.batches_run == 2
        await batcher.close()

    run(main())


def test_wrong_result_count_fails_the_batch() -> None:
    async def main() -> None:
        batcher = MicroBatcher(lambda items: items[:-1], max_batch=2, max_wait_ms=5)
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        await batcher.close()

    run(main())


def test_sync_fn_runs_in_a_thread_and_the_loop_stays_responsive() -> None:
    loop_thread: list[int] = []
    fn_thread: list[int] = []

    def slow(items: list[int]) -> list[int]:
        fn_thread.append(threading.get_ident())
        time.sleep(0.2)
        return items

    async def main() -> int:
        loop_thread.append(threading.get_ident())
        batcher = MicroBatcher(slow, max_batch=1, max_wait_ms=0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        await batcher.submit(1)
        tick_task.cancel()
        await batcher.close()
        return ticks

    ticks = run(main())
    assert ticks >= 5  # the loop kept ticking while the batch slept in its thread
    assert fn_thread[0] != loop_thread[0]


def test_close_drains_queued_items_and_rejects_new_ones() -> None:
    async def identity(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items

    async def main() -> None:
        batcher = MicroBatcher(identity, max_batch=2, max_wait_ms=1000)
        pending = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0)  # let the submits enqueue
        await batcher.close()
        assert [await p for p in pending] == [0, 1, 2, 3, 4]
        with pytest.raises(BatcherClosed):
            await batcher.submit(9)
        await batcher.close()  # idempotent

    run(main())


def test_cancelled_caller_does_not_break_the_batch() -> None:
    async def slow_identity(items: list[int]) -> list[int]:
        await asyncio.sleep(0.05)
        return items

    async def main() -> None:
        batcher = MicroBatcher(slow_identity, max_batch=10, max_wait_ms=20)
        first = asyncio.create_task(batcher.submit(1))
        second = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0)
        first.cancel()
        assert await second == 2
        await batcher.close()

    run(main())


def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=0, max_wait_ms=1)
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=1, max_wait_ms=-1)
