"""The upload service's composition root: the one place that chooses adapters and owns their lifetimes.

Production gets the Kafka producer (started in the background, so the service answers 503 while the broker is down)
and the blob store named by the settings; tests inject a LocalBlobStore and a RecordingPublisher.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from libs.common.blobs import BlobStore, create_blob_store
from libs.common.bus import EventPublisher, client_kwargs
from libs.common.observability import HEALTH_CHECKS, HealthCheck, install_observability
from libs.common.service import bind_publisher_context, blob_store_context, publisher_context
from libs.common.settings import Settings
from services.upload.admission import Admission, BacklogGate, BacklogProbe, KafkaLagProbe, backlog_context
from services.upload.deps import DEPS, UploadDeps
from services.upload.errors import json_errors
from services.upload.publishing import GuardedPublisher
from services.upload.ratelimit import RateLimiter
from services.upload.routes_api import routes as api_routes
from services.upload.routes_ratings import install_ratings
from services.upload.web.site import install_website

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]

SERVICE = "upload"
MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries, part headers and the two flag fields around a max-size photo
MAX_UPLOADS_IN_FLIGHT = 64  # each may hold a full body in memory; past this, shed load with 503 (ARCHITECTURE.md)
DECODE_CONCURRENCY = os.cpu_count() or 2  # decoding is CPU-bound: more threads than cores only adds memory


def create_app(
    settings: Settings,
    *,
    blob_store: BlobStore | None = None,
    publisher: EventPublisher | None = None,
    backlog_probe: BacklogProbe | None = None,
) -> web.Application:
    """Build the upload app. Injected adapters are used as-is and left open; the ones built here are closed here.

    The pipeline backlog is measured by ``backlog_probe`` when given, by Kafka consumer lag when the app owns its
    producer, and not at all otherwise (unit tests with a recording publisher have no pipeline behind them).
    """
    app = web.Application(client_max_size=settings.upload.max_bytes + MULTIPART_SLACK_BYTES)
    metrics = install_observability(app, SERVICE)
    app.middlewares.append(json_errors)  # inside the metrics middleware, so metrics count the final status codes

    events = GuardedPublisher(publisher)
    if publisher is None:
        app.cleanup_ctx.append(publisher_context(settings, SERVICE))
        app.cleanup_ctx.append(bind_publisher_context(events))
    else:
        app[HEALTH_CHECKS]["event_publisher"] = _ready_check(events)

    blobs = blob_store if blob_store is not None else create_blob_store(settings)
    app.cleanup_ctx.append(blob_store_context(blobs, owned=blob_store is None))

    admission = Admission(MAX_UPLOADS_IN_FLIGHT)
    metrics.gauge("howhot_upload_in_flight", "uploads being received, decoded or stored").set_function(
        lambda: admission.active
    )
    limits = settings.upload
    backlog: BacklogGate | None = None
    if backlog_probe is not None or publisher is None:
        backlog = BacklogGate(limits.max_backlog, poll_s=limits.backlog_poll_s)
        probe = backlog_probe
        app.cleanup_ctx.append(
            backlog_context(backlog, lambda: probe or KafkaLagProbe(lambda: client_kwargs(settings.kafka)))
        )
        gate = backlog
        metrics.gauge("howhot_upload_backlog", "photos waiting in the face and scoring consumer groups").set_function(
            lambda: gate.backlog if gate.backlog is not None else -1
        )
    limiter = RateLimiter(
        burst=limits.rate_limit_burst,
        per_minute=limits.rate_limit_per_minute,
        max_clients=limits.rate_limit_max_clients,
        ip_factor=limits.rate_limit_ip_factor,
    )
    app[DEPS] = UploadDeps(
        settings=settings,
        blobs=blobs,
        events=events,
        admission=admission,
        decode_slots=asyncio.Semaphore(DECODE_CONCURRENCY),
        backlog=backlog,
        rate_limiter=limiter,
    )
    app.router.add_routes(api_routes)
    install_ratings(app, settings)  # rate-others + personal scores (talks to the scoring service)
    install_website(app, settings, events)
    return app




def _ready_check(events: GuardedPublisher) -> HealthCheck:
    async def check() -> bool:
        return events.ready

    return check

