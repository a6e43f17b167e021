"""Running a service: every service is an aiohttp app (HTTP API and/or /healthz + /metrics) whose consumers run as
background tasks owned by the app's cleanup context, so start-up and graceful shutdown are the same everywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from libs.common.blobs import BlobStore, BlobStoreError
from libs.common.bus import ConsumerRunner, EventPublisher, KafkaEventPublisher, LateBoundPublisher
from libs.common.events import Event
from libs.common.observability import HEALTH_CHECKS, METRICS
from libs.common.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0  # time a consumer gets to finish and commit its batch on SIGTERM

PUBLISHER = web.AppKey("publisher", EventPublisher)  # type: ignore[type-abstract]
CONSUMERS = web.AppKey("consumers", list)


def publisher_context(
    settings: Settings, producer_name: str, injected: EventPublisher | None = None
) -> AppContext:
    """cleanup_ctx: one Kafka producer per app, started before serving and flushed/stopped at shutdown.

    An ``injected`` publisher (tests: RecordingPublisher) is stored as-is and left to its owner."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if injected is not None:
            app[PUBLISHER] = injected
            yield
            return
        publisher = KafkaEventPublisher(settings.kafka, producer_name)
        app[PUBLISHER] = publisher
        start = asyncio.create_task(publisher.start())  # the broker may be down at start: serve 503s meanwhile

        async def producer_ready() -> bool:
            return publisher.started

        app[HEALTH_CHECKS]["kafka_producer"] = producer_ready
        yield
        start.cancel()
        await publisher.stop()

    return ctx


AppContext = Callable[[web.Application], AsyncIterator[None]]


def consumer_context(build: Callable[[web.Application], ConsumerRunner]) -> AppContext:
    """cleanup_ctx: run a consumer loop in the background; on shutdown let it drain, commit and leave the group."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runner = build(app)
        app.setdefault(CONSUMERS, []).append(runner)
        task = asyncio.create_task(runner.run(), name=f"consumer:{id(runner)}")
        metrics = app[METRICS]

        def report(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("consumer loop crashed", exc_info=done.exception())

        task.add_done_callback(report)

        async def consumer_alive() -> bool:
            return not task.done()

        app[HEALTH_CHECKS][f"consumer_{len(app[CONSUMERS])}"] = consumer_alive
        metrics.gauge("howhot_consumer_handled", "events handled").set_function(lambda: runner.stats.handled)
        yield
        runner.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_S)
        except TimeoutError:
            task.cancel()

    return ctx


def bind_publisher_context(late: LateBoundPublisher) -> AppContext:
    """cleanup_ctx (after ``publisher_context``): hand the app's producer to ``late``; detach it at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        late.bind(app[PUBLISHER])
        yield
        late.bind(None)

    return ctx


def stage_consumer(
    settings: Settings,
    app: web.Application,
    *,
    group_id: str,
    event_type: type[Event],
    handle: Callable[[Any], Awaitable[None]],
    stage_label: str,
    concurrency: int,
) -> ConsumerRunner:
    """The consumer of one pipeline stage: events of ``event_type`` go to ``handle``, timed as ``stage_label``, with
    up to ``concurrency`` photos in flight so the stage's micro-batcher can fill batches across messages."""
    metrics = app[METRICS]

    async def handler(event: Event) -> None:
        if isinstance(event, event_type):
            with metrics.stage_seconds.labels(stage_label).time():
                await handle(event)

    return ConsumerRunner(
        settings.kafka, group_id=group_id, topics=[event_type.TOPIC], dlq_publisher=app[PUBLISHER],
        handler=handler, concurrency=concurrency,
    )


HEALTH_PROBE_KEY = "healthz/probe"  # a key nobody writes: exists() proves the store answers without touching data


def blob_store_context(blobs: BlobStore, owned: bool) -> AppContext:
    """cleanup_ctx: report the blob store on /healthz; close it at shutdown if this app created it."""

    async def store_answers() -> bool:
        try:
            await blobs.exists(HEALTH_PROBE_KEY)
        except BlobStoreError:
            return False
        return True

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[HEALTH_CHECKS]["blob_store"] = store_answers
        yield
        if owned:
            await blobs.close()

    return ctx


def run_service(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; aiohttp runs the cleanup contexts (drain consumers, stop producers) on exit."""
    web.run_app(app, host=host, port=port, print=None, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
