"""Admission control for uploads: refuse early (503 + Retry-After) rather than accept photos we cannot finish in time.

Two independent limits:

* ``Admission`` caps uploads *in flight in this process* (each may hold a whole body in memory);
* ``BacklogGate`` caps the *pipeline backlog*: photos accepted but not yet through the face and scoring stages.

How the backlog is measured, and why: it is the consumer lag of the ``face`` group on photo.uploaded plus the lag of
the ``scoring`` group on faces.detected (end offset − committed offset, summed over partitions), read by a background
task every ``backlog_poll_s``. Lag is the one number every upload replica agrees on (a per-replica count of accepted
photos would be wrong as soon as there are two replicas or one restarts), it needs no extra state or events, and it
is exactly what "the pipeline is behind" means: a photo leaves the lag once its stage has committed it. Requests read
only the cached figure, so admission costs nothing per request. When the lag cannot be measured (broker restarting)
the gate fails open: the publish guard already answers 503 when the broker is really down, and a metrics hiccup must
not turn into an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from aiohttp import web

from services.upload.errors import ApiError, unavailable

log = logging.getLogger(__name__)

BUSY_RETRY_AFTER_S = 10  # a backlog drains in tens of seconds; asking sooner only adds load
BUSY_RETRY_JITTER_S = 5  # spread the retries of a crowd refused together, so they do not return as one wave
STALE_AFTER_POLLS = 5  # a reading older than this many poll intervals is not trusted (fail open)
LAG_GROUPS: dict[str, str] = {"face": "photo.uploaded", "scoring": "faces.detected"}  # group → topic it consumes


class Admission:
    """Load shedding: past ``limit`` uploads in flight, answer 503 + Retry-After rather than queue without bound.

    Each in-flight upload may hold a whole body in memory, so this also caps the process's memory under a spike.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def check(self) -> None:
        """Raise 503 ``overloaded`` if no slot is free now (lets a caller refuse before charging the client)."""
        if self.active >= self.limit:
            raise unavailable("overloaded", "We are receiving a lot of photos right now; please retry in a moment.")

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.check()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class BacklogProbe(Protocol):
    """Measures how many photos wait in the pipeline (raises on failure); the Kafka adapter is KafkaLagProbe."""

    async def measure(self) -> int: ...

    async def close(self) -> None: ...


class BacklogGate:
    """Holds the latest backlog reading and refuses uploads while it is above ``threshold``."""

    def __init__(
        self,
        threshold: int,
        *,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.threshold = threshold
        self.poll_s = poll_s
        self._clock = clock
        self._jitter = jitter
        self.backlog: int | None = None
        self._measured_at = 0.0

    def record(self, backlog: int | None) -> None:
        """Store a fresh reading; None means the measurement failed (the gate then fails open)."""
        self.backlog = backlog
        self._measured_at = self._clock()

    @property
    def current(self) -> int | None:
        """The backlog if the reading is fresh enough to act on, else None."""
        if self.backlog is None or self._clock() - self._measured_at > STALE_AFTER_POLLS * self.poll_s:
            return None
        return self.backlog

    def check(self) -> None:
        """Raise 503 ``busy`` with a jittered Retry-After when the backlog is over the threshold."""
        backlog = self.current
        if backlog is None or backlog <= self.threshold:
            return
        retry_after = BUSY_RETRY_AFTER_S + round(self._jitter() * BUSY_RETRY_JITTER_S)
        raise ApiError(
            503,
            "busy",
            "We are processing a lot of photos right now; your upload will be retried in a moment.",
            headers={"Retry-After": str(retry_after)},
        )


async def poll_backlog(gate: BacklogGate, probe: BacklogProbe, stop: asyncio.Event) -> None:
    """Measure forever (until ``stop``), recording failures as None; never raises out of the loop."""
    while not stop.is_set():
        try:
            gate.record(await probe.measure())
        except Exception as exc:  # noqa: BLE001 - any failure means "unknown"; the gate fails open
            log.warning("backlog measurement failed", extra={"error": repr(exc)})
            gate.record(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), gate.poll_s)


def backlog_context(gate: BacklogGate, make_probe: Callable[[], BacklogProbe]) -> Callable[
    [web.Application], AsyncIterator[None]
]:
    """A cleanup context running ``poll_backlog`` for the app's lifetime (the probe is built inside, not at import)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        probe = make_probe()
        stop = asyncio.Event()
        task = asyncio.create_task(poll_backlog(gate, probe, stop))
        yield
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await probe.close()

    return ctx


class KafkaLagProbe:
    """Sum of the lag of the groups in LAG_GROUPS: committed offsets via the admin API, end offsets via a
    group-less consumer. Clients are started lazily so a broker that is down at start-up does not block the app."""

    def __init__(self, kafka_kwargs: Callable[[], dict[str, object]], groups: dict[str, str] | None = None) -> None:
        self._kwargs = kafka_kwargs  # called at first use: a missing bootstrap is then a failed reading, not a crash
        self._groups = dict(groups or LAG_GROUPS)
        self._admin: object | None = None
        self._consumer: object | None = None

    async def _clients(self) -> tuple[object, object]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._kwargs())
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self._kwargs(), group_id=None, enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer

    async def measure(self) -> int:
        from aiokafka import TopicPartition

        admin, consumer = await self._clients()
        total = 0
        for group, topic in self._groups.items():
            partitions = consumer.partitions_for_topic(topic)  # type: ignore[attr-defined]
            if not partitions:
                await consumer.topics()  # type: ignore[attr-defined]  # refresh metadata once, then retry
                partitions = consumer.partitions_for_topic(topic) or set()  # type: ignore[attr-defined]
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)  # type: ignore[attr-defined]
            starts = await consumer.beginning_offsets(tps)  # type: ignore[attr-defined]
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)  # type: ignore[attr-defined]
            for tp in tps:
                done = committed.get(tp)
                position = done.offset if done is not None and done.offset >= 0 else starts.get(tp, 0)
                total += max(0, ends.get(tp, 0) - position)
        return total

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    if hasattr(client, "stop"):
                        await client.stop()  # type: ignore[attr-defined]
                    else:
                        await client.close()  # type: ignore[attr-defined]
        self._admin = self._consumer = None
