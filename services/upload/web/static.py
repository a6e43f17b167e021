"""Serving /static/{name} from memory: a fixed set of small files, loaded once, with long caching when versioned.

Pages reference assets as ``/static/name?v=<hash>`` (render.static_url), so a versioned request can be cached for a
year (``immutable``); an unversioned or stale-version request gets a short cache, never a wrong file for long.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from aiohttp import web

from services.upload.web.render import STATIC_DIR, STATIC_PREFIX, static_version

CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
LONG_CACHE = "public, max-age=31536000, immutable"  # versioned URLs never change content
SHORT_CACHE = "public, max-age=300"  # unversioned: pick up a deploy within minutes


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    """Every servable file by name (flat directory; nothing outside it can be named)."""
    files: dict[str, StaticFile] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            body = path.read_bytes()
            files[path.name] = StaticFile(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:16]}"')
    return files


async def serve_static(request: web.Request) -> web.Response:
    """200 with the file, 304 when the browser's copy is current, 404 for names we do not serve."""
    name = request.match_info["name"]
    found = static_files().get(name)
    if found is None:
        raise web.HTTPNotFound()
    cache = LONG_CACHE if request.query.get("v") == static_version(name) else SHORT_CACHE
    headers = {"Cache-Control": cache, "ETag": found.etag, "X-Content-Type-Options": "nosniff"}
    wanted = request.if_none_match or ()  # parsed: weak (W/"…", as CDNs that recompress send it), lists, "*"
    if any(tag.value in ("*", found.etag.strip('"')) for tag in wanted):  # If-None-Match compares weakly
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, "Content-Type": found.content_type})


def add_static_route(router: web.UrlDispatcher) -> None:
    router.add_get(STATIC_PREFIX + "{name}", serve_static)
