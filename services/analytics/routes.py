"""The query API: list the named queries, run one with validated parameters, answer JSON.

Other processes never open the analytics store (chDB allows one process per data directory); the dashboard and the
CLI read through these routes, which run only the registered queries in ``queries.QUERIES``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import ValidationError

from services.analytics.queries import QUERIES
from services.analytics.store import EventStore

log = logging.getLogger(__name__)

STORE = web.AppKey("analytics_store", EventStore)
API_TOKEN = web.AppKey("analytics_api_token", str)  # "" means: no token required
API_PREFIX = "/api/v1/"


def _json_default(value: Any) -> Any:
    """ClickHouse values JSON lacks: UUIDs and datetimes as strings (ISO 8601), decimals as floats."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _dumps(doc: Any) -> str:
    return json.dumps(doc, default=_json_default)


def _error(status: int, message: str, **details: Any) -> web.Response:
    return web.json_response({"error": message, **details}, status=status, dumps=_dumps)


@web.middleware
async def require_token(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """When a dashboard token is configured, the query API needs ``Authorization: Bearer <token>`` (/healthz not)."""
    token = request.app[API_TOKEN]
    if token and request.path.startswith(API_PREFIX):
        presented = request.headers.get("Authorization", "")
        scheme, _, value = presented.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            response = _error(401, "missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    return await handler(request)


async def list_queries(request: web.Request) -> web.Response:
    """GET /api/v1/queries → {"queries": [{"name", "description", "parameters": JSON schema}]}."""
    return web.json_response({"queries": [q.schema() for q in QUERIES.values()]}, dumps=_dumps)


async def run_query(request: web.Request) -> web.Response:
    """GET /api/v1/query/{name}?param=value… → {"name", "columns", "rows"} (rows are lists, in column order)."""
    name = request.match_info["name"]
    query = QUERIES.get(name)
    if query is None:
        return _error(404, f"unknown query {name!r}", queries=sorted(QUERIES))
    repeated = sorted({key for key in request.query if len(request.query.getall(key)) > 1})
    if repeated:
        return _error(400, "each parameter may be given once", parameters=repeated)
    try:
        params = query.params.model_validate(dict(request.query))
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _error(400, "invalid parameters", details=errors)
    store = request.app[STORE]
    try:
        result = await store.query(query.render(store.database), params.bind())
    except Exception:  # the store's message may leak SQL internals: log it, answer a generic JSON error
        log.exception("query failed", extra={"query": name})
        return _error(500, f"query {name!r} failed; see the analytics service log")
    return web.json_response({"name": name, "columns": result.columns, "rows": result.rows}, dumps=_dumps)


def add_routes(app: web.Application, token: str) -> None:
    """Mount the query API on ``app``; a non-empty ``token`` turns bearer authentication on."""
    app[API_TOKEN] = token
    app.middlewares.append(require_token)
    app.router.add_get(API_PREFIX + "queries", list_queries)
    app.router.add_get(API_PREFIX + "query/{name}", run_query)
