"""Mount the website on the upload app: pages, static files, the share proxy, headers and the page-view recorder."""

from __future__ import annotations

from aiohttp import web

from libs.common.settings import Settings
from services.upload.publishing import GuardedPublisher
from services.upload.web.pages import routes as page_routes
from services.upload.web.pageviews import PAGE_VIEWS, PageViewRecorder, page_views_context
from services.upload.web.proxy import add_proxy_routes, share_client_context, share_internal_url
from services.upload.web.security import website_middleware
from services.upload.web.static import add_static_route


def install_website(app: web.Application, settings: Settings, events: GuardedPublisher) -> None:
    """Called by create_app after the API's middleware, so website errors are rendered before json_errors sees them."""
    app.middlewares.append(website_middleware)
    recorder = PageViewRecorder(events)
    app[PAGE_VIEWS] = recorder
    app.cleanup_ctx.append(page_views_context(recorder))  # after the publisher's: drained before it stops
    app.cleanup_ctx.append(share_client_context(share_internal_url(settings)))
    app.router.add_routes(page_routes)
    add_static_route(app.router)
    add_proxy_routes(app.router)
