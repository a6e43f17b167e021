"""BatchedModel: requests wait for the model to load, and fail with TransientError (never hang) if it cannot."""

from __future__ import annotations

import asyncio
import threading

import pytest

from libs.common.errors import TransientError
from libs.common.model_serving import BatchedModel


def run(coro):
    return asyncio.run(coro)


def _times(model: int, items: list[int]) -> list[int]:
    return [model * i for i in items]


def test_submits_wait_for_the_model_then_run_in_batches() -> None:
    gate = threading.Event()

    def load() -> int:
        gate.wait(1.0)
        return 10

    async def main() -> None:
        served = BatchedModel(load, _times, max_batch=4, max_wait_ms=1)
        served.start()
        waiting = asyncio.create_task(served.submit(2))
        await asyncio.sleep(0.02)
        assert not waiting.done() and not served.ready
        gate.set()
        assert await asyncio.wait_for(waiting, 1.0) == 20
        assert served.ready and served.load_error is None
        assert await asyncio.wait_for(served.submit(3), 1.0) == 30
        await served.close()

    run(main())


def test_load_failure_makes_waiting_and_later_submits_raise_transient_error() -> None:
    gate = threading.Event()

    def load() -> int:
        gate.wait(1.0)
        raise OSError("weights file missing")

    async def main() -> None:
        served = BatchedModel(load, _times, max_batch=4, max_wait_ms=1)
        served.start()
        waiting = asyncio.create_task(served.submit(1))  # already waiting when the load fails
        await asyncio.sleep(0.02)
        assert not waiting.done()
        gate.set()
        with pytest.raises(TransientError) as waited:
            await asyncio.wait_for(waiting, 0.5)
        assert isinstance(waited.value.__cause__, OSError)
        assert "failed to load" in str(waited.value) and "weights file missing" in str(waited.value)

        with pytest.raises(TransientError) as later:  # a submit after the failure raises at once too
            await asyncio.wait_for(served.submit(2), 0.5)
        assert later.value.__cause__ is served.load_error
        assert not served.ready
        await served.close()

    run(main())
