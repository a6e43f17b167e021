"""Dynamic micro-batching for asyncio services, in the style of Ray Serve's ``serve.batch``.

Neural networks are far cheaper per item in batches, but requests arrive one at a time. ``MicroBatcher`` collects
concurrent ``submit`` calls into a list, runs the batch function once on it, and hands each caller its own result:

* each caller awaits its own future, so one slow or cancelled caller never blocks the others;
* a batch runs as soon as ``max_batch`` items are waiting, or ``max_wait_ms`` after the first item of the batch
  arrived (latency is bounded even under light load);
* outputs map one-to-one to inputs (a batch function returning the wrong number of results fails the whole batch);
* an exception raised by the batch function is delivered to every waiter of that batch;
* a synchronous batch function runs in a worker thread (``asyncio.to_thread``) so the event loop keeps serving
  (Kafka heartbeats, HTTP health checks) during inference;
* ``close()`` lets in-flight and queued items finish, then stops the worker; later submits raise ``BatcherClosed``.

Only one batch runs at a time per batcher: the models behind it are not re-entrant and the CPU is saturated by one
batch anyway. The batcher binds to the running loop lazily on first use, so it can be built outside a loop.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchFn = Callable[[list[T]], "Awaitable[Sequence[R]] | Sequence[R]"]


class BatcherClosed(RuntimeError):
    """Raised by ``submit`` once ``close()`` was called: the service is shutting down."""


class MicroBatcher(Generic[T, R]):
    """Collects concurrent ``submit`` calls into batches for one batch function."""

    def __init__(self, fn: BatchFn, max_batch: int, max_wait_ms: float) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0  # observability: how many batches the function saw
        self.items_run = 0

    def _ensure_worker(self) -> asyncio.Queue[tuple[T, asyncio.Future[R]]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        return self._queue

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its own result (or the batch's exception)."""
        if self._closed:
            raise BatcherClosed("the batcher is closed")
        queue = self._ensure_worker()
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        queue.put_nowait((item, future))
        return await future

    async def _collect(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> list[tuple[T, asyncio.Future[R]]]:
        """Wait for a first item, then for more until the batch is full or the wait since the first item ran out."""
        batch = [await queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch and batch[-1][1] is not None:  # a None future is close()'s sentinel
            # Take what is already queued without yielding: under load the batch fills with no timer at all.
            while len(batch) < self.max_batch and not queue.empty() and batch[-1][1] is not None:
                batch.append(queue.get_nowait())
            if len(batch) >= self.max_batch or batch[-1][1] is None:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = await self._collect(queue)
            if any(fut is None for _, fut in batch):  # the close() sentinel
                live = [(i, f) for i, f in batch if f is not None]
                if live:
                    await self._execute(live)
                return
            await self._execute(batch)

    async def _execute(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        live = [(item, fut) for item, fut in batch if not fut.done()]  # skip callers that were cancelled
        if not live:
            return
        items = [item for item, _ in live]
        try:
            if self._is_async:
                results = await self._fn(items)  # type: ignore[misc]
            else:
                results = await asyncio.to_thread(self._fn, items)
                if inspect.isawaitable(results):
                    results = await results
            results = list(results)
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} inputs")
        except Exception as exc:  # noqa: BLE001 - delivered to every waiter, the worker itself keeps running
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self.batches_run += 1
            self.items_run += len(items)
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def close(self) -> None:
        """Stop accepting items, let queued items run, then stop the worker (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._worker is None or self._worker.done() or self._queue is None:
            return
        self._queue.put_nowait((None, None))  # type: ignore[arg-type]  # sentinel: drains what was queued first
        await self._worker

    async def __aenter__(self) -> MicroBatcher[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
