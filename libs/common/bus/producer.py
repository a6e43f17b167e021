"""Publishing events: acks=all, keyed by photo id, validated by construction (only Event objects go out)."""

from __future__ import annotations

import logging
from typing import Protocol

from aiokafka import AIOKafkaProducer

from libs.common.bus.kafka import client_kwargs, start_with_retry
from libs.common.events import Event
from libs.common.settings import KafkaSettings

log = logging.getLogger(__name__)

LINGER_MS = 5  # a few ms of batching multiplies throughput under load and costs nothing noticeable per photo


class EventPublisher(Protocol):
    """What handlers need to emit events; the Kafka producer and the in-memory fake both provide it."""

    async def publish(self, event: Event) -> None: ...

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        ...


class KafkaEventPublisher:
    """aiokafka producer with acks=all; ``publish`` returns once the broker has the event durably."""

    def __init__(self, settings: KafkaSettings, producer_name: str) -> None:
        self._settings = settings
        self._producer_name = producer_name
        self._producer = AIOKafkaProducer(
            **client_kwargs(settings), acks="all", linger_ms=LINGER_MS, compression_type=None
        )
        self.started = False

    async def start(self, deadline_s: float | None = None) -> None:
        """Connect, retrying until ``deadline_s``. If that fails (deadline passed, a non-retriable error, cancelled)
        the producer is stopped before the error propagates: its client would otherwise stay open ("Unclosed
        AIOKafkaProducer"), as callers only ``stop()`` a publisher that started. A failed publisher is not restarted."""
        try:
            await start_with_retry(self._producer, f"producer:{self._producer_name}", deadline_s)
        except BaseException:
            await self._producer.stop()
            raise
        self.started = True

    async def stop(self) -> None:
        """Flush and close; also closes a producer whose start never ran or never finished (aiokafka's stop is
        idempotent), so every publisher can be stopped unconditionally."""
        await self._producer.stop()
        self.started = False

    async def publish(self, event: Event) -> None:
        key = event.partition_key
        await self._producer.send_and_wait(
            event.TOPIC,
            value=event.to_bytes(),
            key=key.encode() if key else None,
            headers=[("type", event.type.encode()), ("trace_id", event.trace_id.encode())],
        )

    async def publish_many(self, events: list[Event]) -> None:
        """Send a batch and wait for all acks together (much faster than one round trip per event)."""
        futures = []
        for event in events:
            key = event.partition_key
            futures.append(
                await self._producer.send(
                    event.TOPIC, value=event.to_bytes(), key=key.encode() if key else None,
                    headers=[("type", event.type.encode()), ("trace_id", event.trace_id.encode())],
                )
            )
        for future in futures:
            await future

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)
