"""The website's pages: server-rendered shells that the browser fills in from the JSON API (static/*.js).

Every page identifies the visitor (cookie), remembers how they arrived (visitor.py) and reports the view in the
background (pageviews.py); none of that can delay or fail the page.
"""

from __future__ import annotations

import re

from aiohttp import web

from libs.common.ids import ID_PATTERN
from libs.common.settings import Settings
from services.upload.deps import DEPS
from services.upload.web.pageviews import PAGE_VIEWS
from services.upload.web.render import Markup, Page, render, render_page
from services.upload.web.visitor import read_visit, remember_visit

DEFAULT_RETENTION_DAYS = 30  # the product promise until a retention setting exists (see retention_days)
BYTES_PER_MB = 1024 * 1024
PAGE_CACHE = "private, no-cache"  # pages are tiny and set cookies: never kept by a shared cache for another visitor
_PHOTO_ID = re.compile(ID_PATTERN)

routes = web.RouteTableDef()


def retention_days(settings: Settings) -> int:
    """How long photos are kept unless deleted: the retention setting where the settings have one, else 30 days."""
    for section in (settings.upload, settings.core):
        days = getattr(section, "retention_days", None)
        if isinstance(days, int) and days > 0:
            return days
    return DEFAULT_RETENTION_DAYS


def _secure_cookies(settings: Settings) -> bool:
    return settings.core.public_base_url.lower().startswith("https://")


def _respond(request: web.Request, page: Page) -> web.Response:
    """Render, set the visitor cookies, and report the view without waiting for the broker."""
    deps = request.app[DEPS]
    visit = read_visit(request)
    response = web.Response(text=render_page(page), content_type="text/html", headers={"Cache-Control": PAGE_CACHE})
    remember_visit(response, visit, secure=_secure_cookies(deps.settings))
    if request.method == "GET":  # HEAD is a monitor or a crawler checking the link, not a person viewing the page
        request.app[PAGE_VIEWS].record(request.path, visit)
    return response


@routes.get("/")
async def landing(request: web.Request) -> web.Response:
    """Hero and upload form (file picker, drag & drop, camera on phones, progress bar)."""
    max_bytes = request.app[DEPS].settings.upload.max_bytes
    body = Markup(render("index.html", max_bytes=max_bytes, max_mb=max_bytes // BYTES_PER_MB))
    page = Page(
        title="Howhot · How old do you look, and how hot?",
        description="Upload a photo: our AI guesses your age and rates your looks from 1 to 10. Free and anonymous.",
        body=body,
        scripts=("common.js", "upload.js"),
        page_class="page-landing",
    )
    return _respond(request, page)


@routes.get("/p/{photo_id}")
async def result_page(request: web.Request) -> web.Response:
    """The result of one photo; the browser polls the status API and draws the faces."""
    photo_id = request.match_info["photo_id"]
    if not _PHOTO_ID.fullmatch(photo_id):
        raise web.HTTPNotFound()
    page = Page(
        title="Your Howhot result",
        description="Age, gender and attractiveness, per face.",
        body=Markup(render("result.html", photo_id=photo_id)),
        scripts=("common.js", "result.js"),
        page_class="page-result",
        robots="noindex,nofollow",  # a result is private until its owner shares it (the share page is public)
    )
    return _respond(request, page)


@routes.get("/rate")
async def rate_page(request: web.Request) -> web.Response:
    """Hot-or-not voting on faces whose owners opted in; fed by the rating API."""
    page = Page(
        title="Rate others · Howhot",
        description="Hot or not? Rate faces of people who asked to be rated, and teach Howhot your taste.",
        body=Markup(render("rate.html")),
        scripts=("common.js", "rate.js"),
        page_class="page-rate",
    )
    return _respond(request, page)


@routes.get("/privacy")
async def privacy_page(request: web.Request) -> web.Response:
    """What we store, for how long, how to delete it, and the one anonymous cookie."""
    body = Markup(render("privacy.html", retention_days=retention_days(request.app[DEPS].settings)))
    page = Page(
        title="Privacy · Howhot",
        description="What Howhot keeps, for how long, and how to delete it.",
        body=body,
        page_class="page-privacy",
    )
    return _respond(request, page)
