"""The website's pages through the real app factory: they render, carry the security headers, keep all JS and CSS
in /static (CSP-friendly), set the visitor cookie once, and report page views without waiting for the broker."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.events import Event, PageViewed
from libs.common.settings import CoreSettings, Settings
from services.upload.app import create_app
from services.upload.web.pageviews import PAGE_VIEWS
from services.upload.web.security import CSP
from services.upload.web.visitor import REFERRAL_COOKIE, VISITOR_COOKIE, VISITOR_MAX_AGE_S

PAGES = ["/", "/p/AAAAAAAAAAAAAAAAAAAAAA", "/rate", "/privacy"]
SHARE_ID = "ShAreShAreShAreShAre12"
HTML_ACCEPT = {"Accept": "text/html,application/xhtml+xml"}


class BlockedPublisher(RecordingPublisher):
    """A broker that never acknowledges: a page must not wait for it."""

    started = True

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def publish(self, event: Event) -> None:
        await self.release.wait()
        await super().publish(event)


def settings(base_url: str = "http://howhot.test") -> Settings:
    return Settings(core=CoreSettings(public_base_url=base_url))



@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Emit INFO records, so a bad ``extra`` key (e.g. one LogRecord reserves) fails here, not in production."""
    caplog.set_level(logging.INFO)

@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path, publisher: RecordingPublisher):
    return await aiohttp_client(create_app(settings(), blob_store=LocalBlobStore(tmp_path), publisher=publisher))


async def settle(client) -> None:
    """Let the fire-and-forget page-view tasks run."""
    await client.app[PAGE_VIEWS].drain()


@pytest.mark.parametrize("path", PAGES)
async def test_page_renders_with_security_headers_and_no_inline_code(client, path: str) -> None:
    response = await client.get(path, headers=HTML_ACCEPT)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    html = await response.text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert all('src="/static/' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert "<style" not in html.lower()
    assert not re.search(r"\sstyle=", html, flags=re.I)
    assert not re.search(r"\son[a-z]+=", html, flags=re.I)  # no inline event handlers either
    assert not re.search(r"https?://(?!howhot\.test)", html.split("</head>")[0])  # no external fonts/CDNs


async def test_landing_has_accessible_upload_controls(client) -> None:
    html = await (await client.get("/")).text()
    assert 'for="photo-input"' in html and 'id="photo-input"' in html
    assert 'capture="user"' in html and 'accept="image/*"' in html
    assert 'name="rateable"' in html and 'name="store" value="false"' in html
    assert 'aria-live="polite"' in html and "<progress" in html


async def test_result_page_carries_the_photo_id_and_is_not_indexed(client) -> None:
    html = await (await client.get("/p/AAAAAAAAAAAAAAAAAAAAAA")).text()
    assert 'data-photo-id="AAAAAAAAAAAAAAAAAAAAAA"' in html
    assert "/api/v1/photos/AAAAAAAAAAAAAAAAAAAAAA/image" in html
    assert 'content="noindex,nofollow"' in html


async def test_privacy_page_states_retention_and_cookie(client) -> None:
    html = await (await client.get("/privacy")).text()
    assert "30 days" in html and "EXIF" in html and VISITOR_COOKIE in html


async def test_malformed_photo_id_and_unknown_path_are_html_404_for_browsers(client) -> None:
    for path in ("/p/not-an-id", "/nope"):
        response = await client.get(path, headers=HTML_ACCEPT)
        assert response.status == 404
        assert response.content_type == "text/html"
        assert response.headers["Content-Security-Policy"] == CSP


async def test_html_405_keeps_the_allow_header(client) -> None:
    response = await client.post("/", headers=HTML_ACCEPT)
    assert response.status == 405 and response.content_type == "text/html"
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD"}
    assert response.headers["Content-Security-Policy"] == CSP


async def test_api_errors_stay_json(client) -> None:
    response = await client.get("/api/v1/nope", headers=HTML_ACCEPT)
    assert response.status == 404 and response.content_type == "application/json"


async def test_visitor_cookie_is_set_once(client) -> None:
    first = await client.get("/")
    cookie = first.cookies[VISITOR_COOKIE]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,64}", cookie.value)
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == VISITOR_MAX_AGE_S
    assert not cookie["secure"]  # plain-http base URL
    assert first.headers["Cache-Control"] == "private, no-cache"  # a shared cache never hands it to someone else
    second = await client.get("/rate")
    assert VISITOR_COOKIE not in second.cookies


async def test_cookie_is_secure_on_https(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(settings("https://howhot.io"), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    response = await (await aiohttp_client(app)).get("/")
    assert response.cookies[VISITOR_COOKIE]["secure"]


async def test_forged_visitor_cookie_is_replaced(client) -> None:
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: "not a valid id!"})
    response = await client.get("/")
    assert VISITOR_COOKIE in response.cookies


async def test_page_view_published_with_utm_referrer_and_referral(client, publisher: RecordingPublisher) -> None:
    referrer = "https://t.co/abc"
    response = await client.get(
        f"/?ref={SHARE_ID}&utm_source=x&utm_medium=social&utm_campaign=launch", headers={"Referer": referrer}
    )
    assert response.status == 200
    assert response.cookies[REFERRAL_COOKIE].value == SHARE_ID
    await settle(client)
    [view] = publisher.of_type(PageViewed)
    assert view.path == "/"
    assert view.new_visitor is True
    assert view.visitor_id == response.cookies[VISITOR_COOKIE].value
    assert view.attribution.share_id == SHARE_ID
    assert (view.attribution.utm_source, view.attribution.utm_medium, view.attribution.utm_campaign) == (
        "x", "social", "launch"
    )
    assert view.attribution.referrer == referrer

    await client.get("/privacy")  # a later view: same visitor, not new, still carrying the referral
    await settle(client)
    later = publisher.of_type(PageViewed)[-1]
    assert (later.path, later.new_visitor, later.visitor_id) == ("/privacy", False, view.visitor_id)
    assert later.attribution.share_id == SHARE_ID and later.attribution.utm_source == "x"


async def test_same_origin_referrer_is_not_recorded_but_an_external_one_is(
    client, publisher: RecordingPublisher
) -> None:
    """A same-origin Referer is the full URL of one of our pages (the owner's /p/{photo_id}): recording it would keep
    the owner's visitor id linked to the photo after deleting it, which forgets page views by their own path only."""
    photo_id = "AAAAAAAAAAAAAAAAAAAAAA"
    await client.get("/rate", headers={"Referer": str(client.make_url(f"/p/{photo_id}"))})
    await client.get("/rate", headers={"Referer": "https://news.example.com/story"})
    await settle(client)
    internal, external = publisher.of_type(PageViewed)
    assert internal.attribution.referrer is None
    assert photo_id not in internal.model_dump_json()
    assert external.attribution.referrer == "https://news.example.com/story"


async def test_page_does_not_wait_for_a_stuck_broker(aiohttp_client, tmp_path: Path) -> None:
    stuck = BlockedPublisher()
    client = await aiohttp_client(create_app(settings(), blob_store=LocalBlobStore(tmp_path), publisher=stuck))
    async with asyncio.timeout(5):
        response = await client.get("/")
    assert response.status == 200 and not stuck.events
    stuck.release.set()
    await settle(client)
    assert len(stuck.of_type(PageViewed)) == 1


async def test_page_renders_when_the_broker_is_down(aiohttp_client, tmp_path: Path) -> None:
    class Down(RecordingPublisher):
        started = False

    client = await aiohttp_client(create_app(settings(), blob_store=LocalBlobStore(tmp_path), publisher=Down()))
    response = await client.get("/")
    assert response.status == 200
    assert client.app[PAGE_VIEWS].dropped == 1


async def test_static_assets_are_versioned_and_cached(client) -> None:
    html = await (await client.get("/")).text()
    css_url = re.search(r'href="(/static/site\.css\?v=[0-9a-f]+)"', html).group(1)
    response = await client.get(css_url)
    assert response.status == 200 and response.content_type == "text/css"
    assert "immutable" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    for revalidation in (etag, f"W/{etag}", f'"other", {etag}', "*"):  # weak and listed tags, as CDNs send them
        assert (await client.get(css_url, headers={"If-None-Match": revalidation})).status == 304, revalidation
    assert (await client.get(css_url, headers={"If-None-Match": '"other"'})).status == 200
    for name in re.findall(r'src="/static/([a-z]+\.js)\?v=', html):
        assert (await client.get(f"/static/{name}")).status == 200
    assert (await client.get("/static/../app.py")).status == 404
    assert (await client.get("/static/nope.js")).status == 404


async def test_head_requests_are_not_page_views(client, publisher: RecordingPublisher) -> None:
    assert (await client.head("/")).status == 200
    await settle(client)
    assert not publisher.of_type(PageViewed)


def test_retention_follows_the_settings_when_they_have_it() -> None:
    from types import SimpleNamespace

    from services.upload.web.pages import DEFAULT_RETENTION_DAYS, retention_days

    assert retention_days(Settings()) == DEFAULT_RETENTION_DAYS
    configured = SimpleNamespace(upload=SimpleNamespace(retention_days=7), core=SimpleNamespace())
    assert retention_days(configured) == 7  # type: ignore[arg-type]
