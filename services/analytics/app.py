"""The analytics service: the only process that opens the analytics store. It ingests every topic into
``{db}.events``, forgets the per-photo detail of deleted photos (forget.py), and serves the named-query API that the
dashboard and the CLI read through."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from libs.common.bus import EventPublisher
from libs.common.bus.bulk import INGEST_GC_GEN0_THRESHOLD
from libs.common.observability import HEALTH_CHECKS, METRICS, install_observability
from libs.common.service import PUBLISHER, consumer_context, publisher_context
from libs.common.settings import Settings
from services.analytics.consumer import build_consumer
from services.analytics.routes import STORE, add_routes
from services.analytics.store import AnalyticsStore, EventStore

log = logging.getLogger(__name__)

SERVICE_NAME = "analytics"
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
STORE_PING_TIMEOUT_S = 2.0  # a store that takes longer for SELECT 1 is effectively down for the dashboard


def _store_context(settings: Settings, injected: EventStore | None) -> CleanupContext:
    """cleanup_ctx: open the store and migrate before anything consumes; close it last (after the consumer drained).
    An injected store belongs to the caller, who closes it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = injected if injected is not None else await AnalyticsStore.open(settings)
        app[STORE] = store

        async def store_answers() -> bool:
            try:
                return await asyncio.wait_for(store.ping(), STORE_PING_TIMEOUT_S)
            except TimeoutError:
                return False

        app[HEALTH_CHECKS]["analytics_store"] = store_answers
        yield
        if injected is None and isinstance(store, AnalyticsStore):
            await store.close()

    return ctx


async def _ingest_gc_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: tune the cyclic garbage collector for ingestion, and restore it at shutdown (tests share it).

    The consumer keeps up to two batches of records, models and rows alive (tens of thousands of tracked objects
    each); at Python's default thresholds the collector traverses them over and over, which the benchmark showed as
    aiokafka's record parsing tripling in cost. Startup objects (modules, schemas, the app) are frozen out of every
    later collection, and young collections run every INGEST_GC_GEN0_THRESHOLD allocations instead of 700.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(INGEST_GC_GEN0_THRESHOLD, *thresholds[1:])
    log.info("garbage collector tuned for ingestion", extra={"gen0_threshold": INGEST_GC_GEN0_THRESHOLD})
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def create_app(
    settings: Settings,
    *,
    store: EventStore | None = None,
    publisher: EventPublisher | None = None,
    consume: bool = True,
) -> web.Application:
    """Wire the analytics service. ``store``/``publisher`` replace the real adapters (tests); by default the app
    opens the store named by ``settings.clickhouse_dsn`` and a Kafka producer for the dead-letter topics.

    ``consume=False`` serves only the query API: more query replicas against a ClickHouse server, and unit tests
    that must not wait for a broker (a consumer still connecting delays shutdown by the service's grace period).
    """
    app = web.Application()
    install_observability(app, SERVICE_NAME)
    token = settings.analytics.dashboard_token.get_secret_value() if settings.analytics.dashboard_token else ""
    add_routes(app, token)
    app.cleanup_ctx.append(_store_context(settings, store))
    if not consume:
        return app
    app.cleanup_ctx.append(publisher_context(settings, f"{SERVICE_NAME}-dlq", publisher))
    app.cleanup_ctx.append(_ingest_gc_context)
    app.cleanup_ctx.append(consumer_context(lambda a: build_consumer(settings, a[STORE], a[PUBLISHER], a[METRICS])))
    return app
