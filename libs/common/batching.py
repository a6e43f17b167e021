"""Dynamic micro-batching for asyncio services, in the style of Ray Serve's ``serve.batch``.

Neural networks are far cheaper per item in batches, but requests arrive one at a time. ``MicroBatcher`` collects
concurrent ``submit`` calls into a list, runs the batch function once on it, and hands each caller its own result:

* each caller awaits its own future, so one slow or cancelled caller never blocks the others;
* a batch runs as soon as ``max_batch`` items are waiting, or ``max_wait_ms`` after the first item of the batch
  arrived (counted from its ``submit``, so an item that queued behind a running batch does not wait again; latency
  is bounded even under light load);
* outputs map one-to-one to inputs (a batch function returning the wrong number of results fails that call);
* when the batch function raises on a batch of several items, the batch is split in halves and each half runs again
  (recursively), so only the item(s) that fail on their own get the exception and the healthy ones get their results
  (one poison item costs about ``2 * log2(batch)`` extra calls); a batch of one delivers its exception to its waiter;
* a synchronous batch function runs in a worker thread (``asyncio.to_thread``) so the event loop keeps serving
  (Kafka heartbeats, HTTP health checks) during inference;
* ``close()`` lets in-flight and queued items finish, then stops the worker; later submits raise ``BatcherClosed``.

Only one batch runs at a time per batcher: the models behind it are not re-entrant and the CPU is saturated by one
batch anyway. The batcher binds to the running loop lazily on first use, so it can be built outside a loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

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
        # Queued entries are (item, future, time.monotonic() at submit); close()'s sentinel has a None future.
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R], float]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0  # observability: how many batches the function saw
        self.items_run = 0

    def _ensure_worker(self) -> asyncio.Queue[tuple[T, asyncio.Future[R], float]]:
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
        queue.put_nowait((item, future, time.monotonic()))
        return await future

    async def _collect(
        self, queue: asyncio.Queue[tuple[T, asyncio.Future[R], float]]
    ) -> list[tuple[T, asyncio.Future[R], float]]:
        """Wait for a first item, then for more until the batch is full or max_wait since its submit ran out.

        The deadline counts from when the first item was *submitted*, not from when the worker dequeued it: an item
        that queued while the previous batch ran has already waited. If the deadline has passed, the batch runs at
        once with whatever is already queued (taken without waiting).
        """
        batch = [await queue.get()]
        deadline = batch[0][2] + self.max_wait_s
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
            if any(fut is None for _, fut, _ in batch):  # the close() sentinel
                live = [(i, f) for i, f, _ in batch if f is not None]
                if live:
                    await self._execute(live)
                return
            await self._execute([(item, fut) for item, fut, _ in batch])

    async def _call(self, items: list[T]) -> list[R]:
        """One call of the batch function (counted in batches_run/items_run), checked for one result per input."""
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
            return results
        finally:
            self.batches_run += 1
            self.items_run += len(items)

    async def _execute(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        """Run ``batch``; if it raises and holds several items, bisect it so only failing items get the error."""
        live = [(item, fut) for item, fut in batch if not fut.done()]  # skip callers that were cancelled
        if not live:
            return
        try:
            results = await self._call([item for item, _ in live])
        except Exception as exc:  # noqa: BLE001 - delivered to the failing waiters, the worker itself keeps running
            if len(live) == 1:
                fut = live[0][1]
                if not fut.done():
                    fut.set_exception(exc)
                return
            half = len(live) // 2
            log.warning(
                "batch of %d items failed (%s: %s); splitting it in halves to isolate the failing item(s)",
                len(live),
                type(exc).__name__,
                exc,
            )
            await self._execute(live[:half])
            await self._execute(live[half:])
            return
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
        self._queue.put_nowait((None, None, time.monotonic()))  # type: ignore[arg-type]  # sentinel: drains what was queued first
        await self._worker

    async def __aenter__(self) -> MicroBatcher[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
