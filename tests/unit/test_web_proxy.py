"""The reverse proxy to the share service: /s/* and /cards/* pass through on the same origin (status, body, cookies,
query), and a share service that is down becomes a friendly HTML 503, never a 500."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.netutil import free_port
from libs.common.settings import CoreSettings, Settings, ShareSettings
from services.upload.app import create_app
from services.upload.web.security import CSP

SHARE_ID = "ShAreShAreShAreShAre12"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8192  # 2 MB: arrives in many chunks, must arrive whole


def fake_share_service() -> web.Application:
    async def share_page(request: web.Request) -> web.Response:
        response = web.Response(
            text=f"<html><head><meta property='og:title' content='{request.match_info['sid']}'></head></html>",
            content_type="text/html",
        )
        response.headers["X-Seen-Query"] = request.query_string
        response.headers["X-Seen-Forwarded-Host"] = request.headers.get("X-Forwarded-Host", "")
        response.set_cookie("hh_ref", request.match_info["sid"], httponly=True, samesite="Lax")
        return response

    async def card(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png", headers={"Cache-Control": "public, max-age=60"})

    app = web.Application()
    app.router.add_get("/s/{sid}", share_page)
    app.router.add_get("/cards/{sid}/{fmt}.png", card)
    return app


async def upload_client(aiohttp_client, tmp_path: Path, share_port: int):
    settings = Settings(core=CoreSettings(), share=ShareSettings(host="127.0.0.1", port=share_port))
    app = create_app(settings, blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    return await aiohttp_client(app)



@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Emit INFO records, so a bad ``extra`` key (e.g. one LogRecord reserves) fails here, not in production."""
    caplog.set_level(logging.INFO)

@pytest.fixture
async def share_server():
    server = TestServer(fake_share_service(), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_share_page_and_card_are_proxied(aiohttp_client, tmp_path: Path, share_server) -> None:
    client = await upload_client(aiohttp_client, tmp_path, share_server.port)
    page = await client.get(f"/s/{SHARE_ID}?utm_source=x", headers={"Accept": "text/html"})
    assert page.status == 200
    assert f"content='{SHARE_ID}'" in await page.text()
    assert page.headers["X-Seen-Query"] == "utm_source=x"
    assert page.headers["X-Seen-Forwarded-Host"] == f"{client.server.host}:{client.server.port}"
    assert page.cookies["hh_ref"].value == SHARE_ID  # the referral cookie lands on our origin
    assert page.headers["Content-Security-Policy"] == CSP  # added when the share service sends none

    card = await client.get(f"/cards/{SHARE_ID}/og.png")
    assert card.status == 200 and card.content_type == "image/png"
    assert await card.read() == PNG
    assert card.headers["Cache-Control"] == "public, max-age=60"
    head = await client.head(f"/cards/{SHARE_ID}/og.png")
    assert head.status == 200

    missing = await client.get("/s/")
    assert missing.status == 404


async def test_share_service_down_is_a_friendly_503(aiohttp_client, tmp_path: Path) -> None:
    client = await upload_client(aiohttp_client, tmp_path, free_port())  # nothing listens there
    response = await client.get(f"/s/{SHARE_ID}", headers={"Accept": "text/html"})
    assert response.status == 503
    assert response.content_type == "text/html"
    assert response.headers["Retry-After"]
    assert "busy" in (await response.text()).lower()
    card = await client.get(f"/cards/{SHARE_ID}/og.png")
    assert card.status == 503


async def _raw_get(port: int, target: str) -> str:
    """A request line exactly as given (HTTP clients would resolve the dot segments themselves)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: howhot.example\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = (await reader.read()).decode(errors="replace")
    writer.close()
    return answer.split("\r\n", 1)[0]


async def test_only_share_pages_and_cards_are_reachable_through_the_proxy(aiohttp_client, tmp_path: Path) -> None:
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(text="upstream")

    upstream = web.Application()
    upstream.router.add_route("*", "/{tail:.*}", anything)
    share = TestServer(upstream, host="127.0.0.1")
    await share.start_server()
    try:
        client = await upload_client(aiohttp_client, tmp_path, share.port)
        for target in ("/s/../metrics", "/s/%2e%2e/internal/x", "/cards/../../healthz", "/s/./x"):
            assert " 404 " in await _raw_get(client.server.port, target), target
        assert " 200 " in await _raw_get(client.server.port, f"http://howhot.example/s/{SHARE_ID}?ref=x")
        assert seen == [f"/s/{SHARE_ID}?ref=x"]  # absolute-form targets reach the share service in origin form
    finally:
        await share.close()
