"""A model behind a micro-batcher, loaded once per process in a worker thread (ARCHITECTURE.md principle 7).

Loading takes seconds, so it runs off the event loop while /healthz already answers ("models": false until ready);
requests that arrive meanwhile wait for it instead of failing. If loading fails, ``submit`` (including the ones
already waiting) raises ``TransientError``: the consumer retries the work with backoff instead of hanging forever or
dead-lettering it, while /healthz keeps reporting the model not ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Generic, TypeVar

from aiohttp import web

from libs.common.batching import MicroBatcher
from libs.common.errors import TransientError
from libs.common.observability import HEALTH_CHECKS

log = logging.getLogger(__name__)

M = TypeVar("M")
T = TypeVar("T")
R = TypeVar("R")


class BatchedModel(Generic[M, T, R]):
    """``await submit(item)`` runs ``run(model, batch)`` on micro-batches once ``load()`` has produced the model."""

    def __init__(
        self, load: Callable[[], M], run: Callable[[M, list[T]], Sequence[R]], max_batch: int, max_wait_ms: float
    ) -> None:
        self._load = load
        self._run = run
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # set once loading has finished, successfully or not
        self._model: M | None = None
        self._loading: asyncio.Task[None] | None = None
        self.load_error: BaseException | None = None
        self._batcher: MicroBatcher[T, R] = MicroBatcher(self._run_batch, max_batch, max_wait_ms)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def model(self) -> M:
        if self._model is None:
            raise RuntimeError("model not loaded yet")
        return self._model

    def _run_batch(self, items: list[T]) -> Sequence[R]:
        return self._run(self.model, items)

    def start(self) -> None:
        """Begin loading in a worker thread (idempotent)."""
        if self._loading is None:
            self._loading = asyncio.create_task(self._load_in_thread())

    async def _load_in_thread(self) -> None:
        try:
            self._model = await asyncio.to_thread(self._load)
        except BaseException as exc:
            self.load_error = exc
            self._settled.set()  # wake the waiting submits: they raise TransientError instead of hanging
            log.exception("model failed to load")
            if not isinstance(exc, Exception):
                raise  # cancellation (close() during loading) and the like propagate
            return  # logged once here and surfaced by submit(); re-raising would only add "never retrieved" noise
        self._ready.set()
        self._settled.set()
        log.info("model ready")

    async def submit(self, item: T) -> R:
        """Wait for the model, then run ``item`` in a micro-batch; ``TransientError`` if the model failed to load."""
        if not self._ready.is_set():
            await self._settled.wait()
            if self.load_error is not None:
                error = self.load_error
                raise TransientError(f"the model failed to load: {type(error).__name__}: {error}") from error
        return await self._batcher.submit(item)

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        await self._batcher.close()


def batched_model_context(
    key: web.AppKey[BatchedModel], build: Callable[[], BatchedModel]  # type: ignore[type-arg]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """cleanup_ctx: start loading at startup, report readiness on /healthz, close the batcher at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        served = build()
        app[key] = served
        served.start()

        async def model_ready() -> bool:
            return served.ready

        app[HEALTH_CHECKS]["model"] = model_ready
        yield
        await served.close()

    return ctx


def set_torch_threads(threads: int) -> int:
    """Set torch's intra-op threads for this process (0 = one per core) and return the number set."""
    import os

    import torch

    count = threads or max(1, os.cpu_count() or 1)
    torch.set_num_threads(count)
    return count
