"""PageViewed events, published fire-and-forget: analytics must never make a page slow or fail.

A page answers as soon as its HTML is ready; the event is handed to a background task. When the broker is down or slow,
events are dropped (and logged), and at most ``MAX_PENDING`` publishes wait at a time, so a dead broker cannot make the
process accumulate tasks. On shutdown, pending publishes get a short grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from libs.common.events import PageViewed
from services.upload.publishing import BusUnavailable, GuardedPublisher
from services.upload.web.visitor import Visit

log = logging.getLogger(__name__)

PRODUCER = "upload"
MAX_PENDING = 256  # ~a second of peak page views; past this the broker is not keeping up and we drop, not queue
SHUTDOWN_GRACE_S = 2.0  # let in-flight page views land on a graceful stop, but never hold the stop up for long


class PageViewRecorder:
    """Publishes PageViewed in the background; ``dropped`` counts views lost to a full queue or a broker error."""

    def __init__(self, events: GuardedPublisher, *, max_pending: int = MAX_PENDING) -> None:
        self._events = events
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def record(self, path: str, visit: Visit) -> None:
        """Schedule the event and return at once."""
        if len(self._pending) >= self._max_pending or not self._events.ready:
            self.dropped += 1
            return
        event = PageViewed(
            visitor_id=visit.visitor_id,
            path=path[:2048],
            attribution=visit.attribution,
            new_visitor=visit.new_visitor,
            producer=PRODUCER,
        )
        task = asyncio.create_task(self._publish(event))
        self._pending.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._pending.discard)

    async def _publish(self, event: PageViewed) -> None:
        try:
            await self._events.publish(event)
        except BusUnavailable as exc:
            self.dropped += 1
            log.warning("page view not published", extra={"error": str(exc)})
        except Exception:  # a bug in a background task must still be visible in the logs
            self.dropped += 1
            log.exception("page view publish failed")

    async def drain(self, timeout_s: float = SHUTDOWN_GRACE_S) -> None:
        """Wait briefly for pending publishes, then cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in late:
            task.cancel()


PAGE_VIEWS = web.AppKey("page_views", PageViewRecorder)


def page_views_context(recorder: PageViewRecorder) -> Callable[[web.Application], AsyncIterator[None]]:
    """Store the recorder on the app and drain it on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await recorder.drain()

    return ctx
