"""The share service's two ways of publishing, because its two kinds of events deserve different promises.

- card.rendered (from the consumer) must be durable before the offset is committed: ``DurablePublisher`` waits for the
  broker, and turns "producer not started yet" and broker errors into TransientError, which the consumer waits out
  instead of dead-lettering a healthy photo.
- share.viewed (from the share page) is analytics: ``BackgroundPublisher`` sends it without making the page wait, and
  drops it (counted, logged) when the broker is slow or down. A page view is never worth a slow page.
"""

from __future__ import annotations

import asyncio
import logging

from libs.common.bus import EventPublisher, LateBoundPublisher
from libs.common.errors import TransientError
from libs.common.events import Event

log = logging.getLogger(__name__)

BACKGROUND_TIMEOUT_S = 5.0  # acks=all takes milliseconds; a view event still unsent after this is dropped
MAX_PENDING = 1_000  # views in flight while the broker is slow; beyond this, drop instead of growing memory
DRAIN_TIMEOUT_S = 5.0  # at shutdown, how long views still in flight may take before they are abandoned


class DurablePublisher(LateBoundPublisher):
    """Publish and wait for the broker's ack; a missing or failing broker is a TransientError (retried, not DLQ)."""

    def __init__(self, inner: EventPublisher | None = None) -> None:
        super().__init__(inner, unavailable=TransientError)


class BackgroundPublisher:
    """Fire-and-forget publishing for analytics events; keeps references to in-flight sends so none is collected."""

    def __init__(self, inner: EventPublisher, *, timeout_s: float = BACKGROUND_TIMEOUT_S) -> None:
        self._inner = inner
        self._timeout_s = timeout_s
        self._pending: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.sent = 0

    def submit(self, event: Event) -> bool:
        """Start sending ``event`` and return at once; False when it was dropped because too many are in flight."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            log.warning("too many events in flight: dropped", extra={"type": event.type})
            return False
        task = asyncio.create_task(self._send(event), name=f"publish:{event.type}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _send(self, event: Event) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._inner.publish(event)
            self.sent += 1
        except Exception as exc:  # noqa: BLE001 - analytics must never break the page; count and move on
            self.dropped += 1
            log.warning("analytics event dropped", extra={"type": event.type, "error": repr(exc)})

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Let in-flight sends finish (at shutdown, before the producer stops); cancel what is left after the wait."""
        if not self._pending:
            return
        _, still = await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in still:
            task.cancel()
