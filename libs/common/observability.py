"""/healthz and /metrics for every service (Prometheus text format), mounted by each app factory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

HealthCheck = Callable[[], Awaitable[bool]]

METRICS = web.AppKey("metrics", "ServiceMetrics")
HEALTH_CHECKS = web.AppKey("health_checks", dict)


class ServiceMetrics:
    """A per-app Prometheus registry (several apps can live in one test process without clashing)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "howhot_http_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "howhot_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.events_handled = Counter(
            "howhot_events_handled", "Events handled by consumers", ["topic"], registry=self.registry
        )
        self.events_dead_lettered = Counter(
            "howhot_events_dead_lettered", "Events sent to a dead-letter topic", registry=self.registry
        )
        self.stage_seconds = Histogram(
            "howhot_stage_seconds", "Time spent handling one unit of work", ["stage"], registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, doc: str) -> Gauge:
        if name not in self.gauges:
            self.gauges[name] = Gauge(name, doc, registry=self.registry)
        return self.gauges[name]


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count requests and time them per route (route pattern, not raw path: ids would explode the label space)."""
    metrics = request.app[METRICS]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    with metrics.latency.labels(route).time():
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(route, str(exc.status)).inc()
            raise
    metrics.requests.labels(route, str(response.status)).inc()
    return response


async def healthz(request: web.Request) -> web.Response:
    checks = request.app[HEALTH_CHECKS]
    results = {name: await check() for name, check in checks.items()}
    ok = all(results.values())
    return web.json_response({"status": "ok" if ok else "unhealthy", "checks": results}, status=200 if ok else 503)


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def install_observability(app: web.Application, service: str) -> ServiceMetrics:
    """Mount /healthz and /metrics on ``app`` and return its metrics; add checks to ``app[HEALTH_CHECKS]``."""
    metrics = ServiceMetrics(service)
    app[METRICS] = metrics
    app[HEALTH_CHECKS] = {}
    app.middlewares.append(metrics_middleware)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return metrics
