"""The upload service's view of the event bus: either it takes the event durably, or it says it is unavailable.

An upload is accepted only once photo.uploaded is on the broker (acks=all). This adapter turns every way the broker can
fail (producer not started yet, Kafka errors, a publish that hangs) into one exception the handlers understand, so
they never import aiokafka.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaError

from libs.common.bus import EventPublisher
from libs.common.events import Event

PUBLISH_TIMEOUT_S = 10.0  # acks=all normally takes milliseconds; past this the client is better told to retry


class BusUnavailable(Exception):
    """The event could not be handed to the broker (or it is unknown whether it was): treat the request as refused."""


class GuardedPublisher:
    """Wraps an EventPublisher; the real producer is bound once its cleanup context has created it."""

    def __init__(self, inner: EventPublisher | None = None, *, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self._inner = inner
        self._timeout_s = timeout_s

    def bind(self, inner: EventPublisher | None) -> None:
        self._inner = inner

    @property
    def ready(self) -> bool:
        """Whether a publish can succeed now (a Kafka producer connects in the background and may still be starting)."""
        return self._inner is not None and bool(getattr(self._inner, "started", True))

    async def publish(self, event: Event) -> None:
        """Publish and wait for the broker's acknowledgement; raise BusUnavailable otherwise."""
        if self._inner is None or not self.ready:
            raise BusUnavailable("event publisher is not started")
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._inner.publish(event)
        except (KafkaError, TimeoutError) as exc:
            raise BusUnavailable(f"publishing {event.type} failed: {exc!r}") from exc
