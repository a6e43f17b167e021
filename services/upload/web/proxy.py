"""Reverse proxy for /s/* (share pages) and /cards/* (card PNGs) to the share service, so the site has one origin.

One origin means the share page's cookies (hh_ref, hh_vid) are first-party for the upload that follows, and link
previews fetch cards from the same host as the page. Only GET/HEAD are proxied, with a small header allow-list; any
failure to reach the share service becomes a friendly 502/503 page (never a stack trace).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from libs.common.settings import Settings
from services.upload.errors import RETRY_AFTER_S
from services.upload.form import read_body
from services.upload.web.security import error_page

log = logging.getLogger(__name__)

PROXIED_PREFIXES = ("/s/", "/cards/")
CONNECT_TIMEOUT_S = 2.0  # the share service is on the same network: failing to connect in 2 s means it is down
TOTAL_TIMEOUT_S = 15.0  # a cold card render can take a second or two; past this the visitor has given up anyway
MAX_BODY_BYTES = 8 * 1024 * 1024  # a story card is ~1–2 MB; anything bigger is not a page or card of ours
FORWARDED_REQUEST_HEADERS = (
    "Accept", "Accept-Language", "Cookie", "If-None-Match", "If-Modified-Since", "Referer", "User-Agent",
)
DROPPED_RESPONSE_HEADERS = frozenset({  # hop-by-hop, or recomputed by aiohttp for the body we send
    "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
    "proxy-authenticate", "trailer", "te",
})


def share_internal_url(settings: Settings) -> str:
    """Where the share service listens. HOWHOT_SHARE_INTERNAL_URL (``settings.share.internal_url``) once the share
    settings have it; until then its host and port."""
    explicit = getattr(settings.share, "internal_url", None)
    return str(explicit).rstrip("/") if explicit else f"http://{settings.share.host}:{settings.share.port}"


SHARE_HTTP = web.AppKey("share_http", aiohttp.ClientSession)
SHARE_BASE = web.AppKey("share_base", str)


def share_client_context(base_url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """One pooled client session for the app's lifetime (a session per request would redo TCP set-up each time)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
        session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        app[SHARE_HTTP] = session
        app[SHARE_BASE] = base_url
        yield
        await session.close()

    return ctx


def _forwarded_headers(request: web.Request) -> dict[str, str]:
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    if "Accept-Encoding" in request.headers:  # bodies pass through untouched (auto_decompress=False)
        headers["Accept-Encoding"] = request.headers["Accept-Encoding"]
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


async def proxy_to_share(request: web.Request) -> web.StreamResponse:
    """Forward the request to the share service and relay its answer (status, headers incl. Set-Cookie, body)."""
    session = request.app[SHARE_HTTP]
    path = request.rel_url.raw_path  # origin form even for an absolute-form request target
    if any(segment in (".", "..") for segment in request.rel_url.path.split("/")) or not path.startswith(
        PROXIED_PREFIXES
    ):  # the client would resolve "/s/../metrics" to "/metrics": only share pages and cards are proxied
        return error_page(404)
    target = f"{request.app[SHARE_BASE]}{request.rel_url.raw_path_qs}"  # raw: the exact path and query
    try:
        async with session.request(
            request.method, target, headers=_forwarded_headers(request), allow_redirects=False
        ) as upstream:
            body = await read_body(upstream.content, MAX_BODY_BYTES)
            if body is None:
                log.error("share service answer too large", extra={"path": request.path})
                return error_page(502)
            headers = CIMultiDict(
                (name, value) for name, value in upstream.headers.items()
                if name.lower() not in DROPPED_RESPONSE_HEADERS
            )
            return web.Response(status=upstream.status, body=body, headers=headers)
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        log.warning("share service unreachable", extra={"path": request.path, "error": repr(exc)})
        return error_page(503, headers={"Retry-After": str(RETRY_AFTER_S)})
    except aiohttp.ClientError as exc:
        log.warning("share service answered badly", extra={"path": request.path, "error": repr(exc)})
        return error_page(502)


def add_proxy_routes(router: web.UrlDispatcher) -> None:
    for prefix in PROXIED_PREFIXES:
        router.add_get(prefix + "{tail:.*}", proxy_to_share)  # add_get also routes HEAD (link-preview bots use it)
