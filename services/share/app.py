"""The share service's composition root: the one place that chooses adapters and owns their lifetimes.

Production gets a Kafka producer (card.rendered, share.viewed, dead letters), the blob store named by the settings and
the "share" consumer; tests inject a LocalBlobStore and a RecordingPublisher, and ``consume=False`` serves only HTTP.
The card renderer's caches are warmed in a thread at start-up (and /healthz waits for it) so the first card is fast.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from libs.common.blobs import BlobStore, StorageGiveUp, create_blob_store
from libs.common.bus import EventPublisher
from libs.common.observability import HEALTH_CHECKS, HealthCheck, install_observability
from libs.common.service import (
    bind_publisher_context,
    blob_store_context,
    consumer_context,
    publisher_context,
)
from libs.common.settings import Settings
from services.share.consumer import build_consumer
from services.share.handlers import SERVICE, ShareHandlers
from services.share.lookup import ShareLookup
from services.share.publishing import BackgroundPublisher, DurablePublisher
from services.share.render import CardRenderer
from services.share.routes import (
    LOOKUP,
    PUBLIC_BASE_URL,
    VIEWS,
    add_security_headers,
    blob_store_unavailable,
    routes,
)

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


__all__ = ["SERVICE", "create_app"]


def create_app(
    settings: Settings,
    *,
    blob_store: BlobStore | None = None,
    publisher: EventPublisher | None = None,
    consume: bool = True,
) -> web.Application:
    """Build the share app. Injected adapters are used as-is and left open; the ones built here are closed here.

    ``consume=False`` serves only the pages and cards (unit tests, or extra HTTP replicas behind a CDN).
    """
    app = web.Application()
    metrics = install_observability(app, SERVICE)
    app.middlewares.append(blob_store_unavailable)
    app.on_response_prepare.append(add_security_headers)

    events = DurablePublisher(publisher)
    if publisher is None:
        app.cleanup_ctx.append(publisher_context(settings, SERVICE))
        app.cleanup_ctx.append(bind_publisher_context(events))
    else:
        app[HEALTH_CHECKS]["event_publisher"] = _ready_check(lambda: events.ready)
    views = BackgroundPublisher(events)
    app.cleanup_ctx.append(_drain_on_shutdown(views))  # after the bind: drained before the producer stops
    metrics.gauge("howhot_share_views_dropped", "share.viewed events not delivered").set_function(
        lambda: views.dropped
    )

    blobs = blob_store if blob_store is not None else create_blob_store(settings)
    app.cleanup_ctx.append(blob_store_context(blobs, owned=blob_store is None))

    renderer = CardRenderer()
    app.cleanup_ctx.append(_warm_renderer(renderer))
    app[HEALTH_CHECKS]["card_renderer_warm"] = _ready_check(lambda: renderer.warmed)

    handlers = ShareHandlers(blobs, events, renderer, settings.core.public_base_url, metrics,
                             StorageGiveUp(settings.blobs.give_up_after_s))
    app[LOOKUP] = ShareLookup(handlers)
    app[VIEWS] = views
    app[PUBLIC_BASE_URL] = settings.core.public_base_url
    if consume:
        app.cleanup_ctx.append(consumer_context(lambda _: build_consumer(settings, handlers, events)))
    app.router.add_routes(routes)
    return app



def _drain_on_shutdown(views: BackgroundPublisher) -> CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await views.drain()

    return ctx


def _warm_renderer(renderer: CardRenderer) -> CleanupCtx:
    """Warm fonts and backdrops in the background: serving starts at once, renders queue behind the warm-up."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(renderer.warm_up(), name="share:warm-caches")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed warm-up was reported by /healthz
            await task

    return ctx



def _ready_check(is_ready: Callable[[], bool]) -> HealthCheck:
    async def check() -> bool:
        return is_ready()

    return check

