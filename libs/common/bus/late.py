"""A publisher whose Kafka producer is attached after the app is built.

The producer is created by ``publisher_context`` at startup and connects in the background (a broker that is down at
start must not stop the service from serving). Handlers hold this wrapper from the start; until a started producer is
bound, and whenever the broker fails or hangs, ``publish`` raises the caller's chosen "unavailable" exception, so
handlers never import aiokafka.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.errors import KafkaError

from libs.common.bus.producer import EventPublisher
from libs.common.events import Event


class LateBoundPublisher:
    """Waits for the broker's ack; any failure (not started, Kafka error, timeout) becomes ``unavailable``."""

    def __init__(
        self,
        inner: EventPublisher | None = None,
        *,
        unavailable: type[Exception],
        timeout_s: float | None = None,
    ) -> None:
        self._inner = inner
        self._unavailable = unavailable
        self._timeout_s = timeout_s

    def bind(self, inner: EventPublisher | None) -> None:
        """Attach (or detach, at shutdown) the producer."""
        self._inner = inner

    @property
    def ready(self) -> bool:
        """Whether a publish can succeed now (a Kafka producer connects in the background and may still be starting)."""
        return self._inner is not None and bool(getattr(self._inner, "started", True))

    async def publish(self, event: Event) -> None:
        if self._inner is None or not self.ready:
            raise self._unavailable("event producer is not started yet")
        timeout = asyncio.timeout(self._timeout_s) if self._timeout_s else contextlib.nullcontext()
        try:
            async with timeout:
                await self._inner.publish(event)
        except (KafkaError, TimeoutError) as exc:
            raise self._unavailable(f"publishing {event.type} failed: {exc!r}") from exc

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Dead letters go straight to the producer (the consumer runner retries these itself)."""
        if self._inner is None:
            raise self._unavailable("event producer is not started yet")
        await self._inner.publish_raw(topic, value, key, headers)

