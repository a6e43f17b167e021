"""HTTP: the public share page /s/{share_id} and the card images /cards/{share_id}/{fmt}.png.

Both exist only for shares the owner made public (shares/{share_id}.json). A card not rendered yet (the share was
pressed before this service handled photo.scored) is rendered on demand from the stored result; a photo that is not
scored yet answers 404 with Retry-After. Every response carries the security headers below.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from aiohttp import web

from libs.common.blobs import BlobStoreUnavailable
from services.share.featured import CARD_PATH, description, headline, image_alt, public_url, share_url
from services.share.layout import CardFormat
from services.share.lookup import ShareLookup
from services.share.pages import (
    DELETED,
    NOT_SHARED,
    STYLESHEET,
    STYLESHEET_PATH,
    UNAVAILABLE,
    SharePage,
    message_page_html,
    share_page_html,
)
from services.share.publishing import BackgroundPublisher
from services.share.tracking import (
    REF_COOKIE,
    REF_COOKIE_MAX_AGE_S,
    VISITOR_COOKIE,
    VISITOR_COOKIE_MAX_AGE_S,
    is_link_preview_bot,
    is_valid_id,
    share_viewed,
    try_it_href,
    visitor_id,
)

log = logging.getLogger(__name__)

LOOKUP = web.AppKey("share_lookup", ShareLookup)
VIEWS = web.AppKey("share_views", BackgroundPublisher)
PUBLIC_BASE_URL = web.AppKey("public_base_url", str)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
CARD_CACHE_CONTROL = "public, max-age=3600"  # CDNs absorb a viral card; an hour bounds how long a deleted face lingers
CSS_CACHE_CONTROL = "public, max-age=86400"
PAGE_CACHE_CONTROL = "private, no-cache"  # the page sets per-visitor cookies: no shared caches
NOT_READY_RETRY_AFTER_S = 5  # scoring takes seconds; a crawler or browser retrying sooner would only find 404 again
UNAVAILABLE_RETRY_AFTER_S = 10
ETAG_HEX_CHARS = 32  # 128 bits of SHA-256: collisions are not a concern for cache validation
HTML = "text/html"

routes = web.RouteTableDef()


@routes.get(STYLESHEET_PATH)
async def stylesheet(request: web.Request) -> web.Response:
    """The one stylesheet (CSP forbids inline styles)."""
    return web.Response(text=STYLESHEET, content_type="text/css", headers={"Cache-Control": CSS_CACHE_CONTROL})


@routes.get("/s/{share_id}")
async def share_page(request: web.Request) -> web.Response:
    """The page friends land on: preview tags, the card, the call to action; sets hh_ref and counts the view."""
    share_id = request.match_info["share_id"]
    lookup = request.app[LOOKUP]
    view = await lookup.share_view(share_id) if is_valid_id(share_id) else None
    if view is None and not (is_valid_id(share_id) and await lookup.share_deleted(share_id)):
        return _message(NOT_SHARED, web.HTTPNotFound.status_code)
    if view is None or view.deleted:
        return _message(DELETED, web.HTTPGone.status_code)
    base = request.app[PUBLIC_BASE_URL]
    page = SharePage(
        share_id=share_id,
        title=headline(view.face),
        description=description(view.face),
        page_url=share_url(base, share_id),
        og_image_url=public_url(base, CARD_PATH.format(share_id=share_id, fmt="og")),
        image_alt=image_alt(view.face),
        card_src=CARD_PATH.format(share_id=share_id, fmt="og"),
        cta_href=try_it_href(share_id, request.query),
    )
    response = web.Response(
        text=share_page_html(page), content_type=HTML, headers={"Cache-Control": PAGE_CACHE_CONTROL}
    )
    visitor, new_visitor = visitor_id(request.cookies)
    own = not new_visitor and visitor == view.owner_visitor  # the sharer looking at their own page: no referral
    _set_cookies(response, None if own else share_id, visitor if new_visitor else None,
                 secure=base.startswith("https://"))
    if request.method == "GET" and not own and not is_link_preview_bot(request.headers.get("User-Agent")):
        event = share_viewed(
            share_id, view.share.photo_id, visitor, request.headers.get("Referer"), request.query
        )
        request.app[VIEWS].submit(event)  # fire and forget: the page never waits for Kafka
    return response


@routes.get("/cards/{share_id}/{fmt:og|square|story}.png")
async def card_image(request: web.Request) -> web.Response:
    """A shared photo's card as PNG, with an ETag (cards are immutable per key) and a public cache lifetime."""
    share_id = request.match_info["share_id"]
    fmt: CardFormat = request.match_info["fmt"]  # type: ignore[assignment] - the route pattern allows only these
    lookup = request.app[LOOKUP]
    share = await lookup.load_share(share_id) if is_valid_id(share_id) else None
    if share is None:
        raise web.HTTPNotFound(text="no such card", headers={"Cache-Control": "no-store"})
    png = await lookup.card_png(share, fmt)
    if png is None:
        raise web.HTTPNotFound(
            text="card not ready", headers={"Retry-After": str(NOT_READY_RETRY_AFTER_S), "Cache-Control": "no-store"}
        )
    etag = hashlib.sha256(png).hexdigest()[:ETAG_HEX_CHARS]
    headers = {"Cache-Control": CARD_CACHE_CONTROL, "ETag": f'"{etag}"'}
    if request.if_none_match and any(tag.value in (etag, "*") for tag in request.if_none_match):
        raise web.HTTPNotModified(headers=headers)
    return web.Response(body=png, content_type="image/png", headers=headers)


@web.middleware
async def blob_store_unavailable(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """A blob store outage is a 503 with Retry-After (a friendly page for humans), never a stack trace."""
    try:
        return await handler(request)
    except BlobStoreUnavailable as exc:
        log.warning("blob store unavailable", extra={"path": request.path, "error": repr(exc)})
        response = _message(UNAVAILABLE, web.HTTPServiceUnavailable.status_code)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
        return response


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, errors included, gets the CSP and friends."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def _set_cookies(response: web.Response, share_id: str | None, new_visitor: str | None, *, secure: bool) -> None:
    """hh_ref for the referral (last touch; None: not a referral), hh_vid only for a visitor we have not seen;
    first-party, Lax."""
    options: dict[str, Any] = {"path": "/", "samesite": "Lax", "httponly": True, "secure": secure}
    if new_visitor is not None:
        response.set_cookie(VISITOR_COOKIE, new_visitor, max_age=VISITOR_COOKIE_MAX_AGE_S, **options)
    if share_id is not None:
        response.set_cookie(REF_COOKIE, share_id, max_age=REF_COOKIE_MAX_AGE_S, **options)


def _message(text: tuple[str, str], status: int) -> web.Response:
    title, message = text
    return web.Response(
        text=message_page_html(title, message), status=status, content_type=HTML, headers={"Cache-Control": "no-store"}
    )
