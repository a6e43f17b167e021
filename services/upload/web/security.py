"""Security headers on every HTML answer, and HTML (not JSON) error pages for browsers on website paths.

The CSP forbids inline script and style, so every page keeps its JS and CSS in /static: an injected ``<script>``
cannot run. Error pages for the website are friendly HTML; the API keeps its JSON errors (errors.json_errors).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from services.upload.web.render import Markup, Page, render, render_page

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",  # shared links never leak a result page's photo id
}
NON_WEBSITE_PREFIXES = ("/api/", "/healthz", "/metrics")
KEPT_ERROR_HEADERS = frozenset({"retry-after", "allow"})  # an error page still says when to retry, which methods work
HTML = "text/html"

ERROR_WORDS: Mapping[int, tuple[str, str]] = {
    404: ("Not found", "There is nothing here. The link may be mistyped, or the photo was deleted."),
    405: ("Not allowed", "That is not something this page can do."),
    413: ("Too big", "That upload is too big."),
    500: ("Something broke", "Something went wrong on our side. Please try again in a moment."),
    502: ("Hiccup", "Part of Howhot answered strangely. Please try again in a moment."),
    503: ("We're busy", "Howhot is very busy or restarting. Please try again in a few seconds."),
}


def add_security_headers(response: web.StreamResponse) -> None:
    """Set the headers unless the response brought its own (a proxied page may have a stricter policy)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def error_page(status: int, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A friendly HTML error page with the security headers and no caching."""
    title, message = ERROR_WORDS.get(status, ("Oops", "That did not work. Please go back and try again."))
    body = Markup(render("error.html", status=status, title=title, message=message))
    page = Page(title=f"{title} · Howhot", description=message, body=body, robots="noindex")
    headers = {**(headers or {}), "Cache-Control": "no-store"}
    response = web.Response(text=render_page(page), status=status, content_type=HTML, headers=headers)
    add_security_headers(response)
    return response


def _wants_html(request: web.Request) -> bool:
    return not request.path.startswith(NON_WEBSITE_PREFIXES) and HTML in request.headers.get("Accept", "")


@web.middleware
async def website_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Headers on HTML answers; for browsers on website paths, errors become HTML pages instead of JSON."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not _wants_html(request):
            raise
        kept = {k: v for k, v in exc.headers.items() if k.lower() in KEPT_ERROR_HEADERS}
        return error_page(exc.status, headers=kept)
    except Exception:
        if not _wants_html(request):
            raise
        log.exception("unhandled website error", extra={"method": request.method, "path": request.path})
        return error_page(500)
    if response.content_type == HTML:
        add_security_headers(response)
    return response
