"""The public JSON API under /api/v1: parse and check the request at the edge, call a handler, shape the answer.

Status codes are documented in openapi.py (served at /api/v1/openapi.json); tests keep the two in step.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from libs.common.blobs import BlobStoreUnavailable
from libs.common.ids import ID_PATTERN
from libs.common.images import ImageRejected
from services.upload import handlers
from services.upload.deps import DEPS
from services.upload.errors import ApiError, unavailable
from services.upload.form import read_body, read_upload_form
from services.upload.openapi import OPENAPI
from services.upload.status import NOT_FOUND_MESSAGE, compose_status
from services.upload.web.visitor import stored_attribution, visitor_id_of

API_PREFIX = "/api/v1"
PHOTOS_PATH = f"{API_PREFIX}/photos"
PHOTO_PATH = f"{API_PREFIX}/photos/{{photo_id}}"
SHARE_PATH = f"{PHOTO_PATH}/share"
IMAGE_PATH = f"{PHOTO_PATH}/image"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"
SHARE_CHANNELS = frozenset({"x", "facebook", "whatsapp", "copy", "download", "native"})  # PhotoShared.channel
MAX_SHARE_BODY_BYTES = 1024  # {"channel": "..."} is a few dozen bytes
IMAGE_CACHE = "private, max-age=3600"  # the owner's browser may keep it; shared caches must not (it is a face)
DELETE_TOKEN_HEADER = "X-Delete-Token"  # noqa: S105 - a header name, not a secret
TRACE_HEADER = "X-Trace-Id"
NO_STORE = {"Cache-Control": "no-store"}  # status and tokens are per-owner and change: no shared or stale copies
_PHOTO_ID = re.compile(ID_PATTERN)

routes = web.RouteTableDef()


def _broker_down() -> ApiError:
    return unavailable("broker_unavailable", "We cannot accept photos for a moment; please retry shortly.")


def _storage_down() -> ApiError:
    return unavailable("storage_unavailable", "Photo storage is unavailable for a moment; please retry shortly.")


def _photo_id(request: web.Request) -> str:
    """The path's photo id, or 404: a malformed id names no photo (fullmatch: no trailing newline sneaks in)."""
    photo_id = request.match_info["photo_id"]
    if not _PHOTO_ID.fullmatch(photo_id):
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE)
    return photo_id


@routes.post(PHOTOS_PATH)
async def upload_photo(request: web.Request) -> web.Response:
    """Accept a photo: 202 with the status URL and the one-time delete token, once bytes and event are durable."""
    deps = request.app[DEPS]
    if not deps.events.ready:  # refuse before reading the body: nothing could be accepted anyway
        raise _broker_down()
    # refusals for the crowd (busy pipeline, every slot taken) come first: they must not spend anyone's tokens;
    # nothing awaits between the slot check and taking the slot, so the check still holds when slot() runs
    if deps.backlog is not None:
        deps.backlog.check()
    deps.admission.check()
    _charge_rate_limit(request)
    with deps.admission.slot():
        limits = deps.settings.upload
        form = await read_upload_form(request, max_photo_bytes=limits.max_bytes, deadline_s=limits.body_timeout_s)
        try:
            image = await deps.normalize(form.photo)
        except ImageRejected as exc:
            raise ApiError(exc.http_status, exc.code, exc.message) from exc
        choices = handlers.UploadChoices(rateable=form.rateable, store_photo=form.store_photo)
        visitor = handlers.Visitor(visitor_id=visitor_id_of(request), attribution=stored_attribution(request))
        try:
            accepted = await handlers.accept_photo(
                image, choices, blobs=deps.blobs, events=deps.events, visitor=visitor
            )
        except handlers.BusUnavailable as exc:
            raise _broker_down() from exc
        except BlobStoreUnavailable as exc:
            raise _storage_down() from exc
    status_url = f"{deps.settings.core.public_base_url.rstrip('/')}{PHOTOS_PATH}/{accepted.photo_id}"
    body = {
        "photo_id": accepted.photo_id,
        "status_url": status_url,
        "delete_token": accepted.delete_token,
        "trace_id": accepted.trace_id,
    }
    headers = {**NO_STORE, "Location": status_url, TRACE_HEADER: accepted.trace_id}
    return web.json_response(body, status=202, headers=headers)


def _charge_rate_limit(request: web.Request) -> None:
    """Take one token from the client's buckets (visitor cookie and IP), or refuse with 429 + Retry-After.

    The IP is the socket peer: X-Forwarded-For is not trusted here, since any client can write it.
    """
    limiter = request.app[DEPS].rate_limiter
    if limiter is None:
        return
    decision = limiter.check(visitor_id=visitor_id_of(request), ip=request.remote)
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            "You are uploading faster than we allow; please wait a moment.",
            headers={"Retry-After": str(decision.retry_after_s)},
        )


@routes.get(PHOTO_PATH)
async def photo_status(request: web.Request) -> web.Response:
    """The photo's status composed from the stage documents; ``?viewer=`` is accepted and not used yet."""
    deps = request.app[DEPS]
    photo_id = _photo_id(request)
    try:
        docs = await handlers.load_stage_documents(photo_id, blobs=deps.blobs)
    except BlobStoreUnavailable as exc:
        raise _storage_down() from exc
    status = compose_status(photo_id, docs)
    return web.json_response(status.body, status=status.http_status, headers=NO_STORE)


@routes.delete(PHOTO_PATH)
async def delete_photo(request: web.Request) -> web.Response:
    """Delete with the owner's token. A repeated DELETE answers 410 like GET does (there is nothing left to check)."""
    deps = request.app[DEPS]
    photo_id = _photo_id(request)
    token, checked_token = _delete_token(request)
    try:
        await handlers.delete_photo(photo_id, checked_token, blobs=deps.blobs, events=deps.events)
    except handlers.PhotoNotFound as exc:
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE) from exc
    except handlers.PhotoGone:
        return web.json_response({"photo_id": photo_id, "status": "deleted"}, status=410, headers=NO_STORE)
    except handlers.WrongDeleteToken as exc:
        raise _token_refused(token) from exc
    except handlers.BusUnavailable as exc:
        raise _broker_down() from exc
    except BlobStoreUnavailable as exc:
        raise _storage_down() from exc
    return web.json_response({"photo_id": photo_id, "status": "deleted"}, headers=NO_STORE)


def _delete_token(request: web.Request) -> tuple[str | None, str | None]:
    """The X-Delete-Token header as sent, and as safe to check against the stored hash.

    aiohttp keeps header bytes that are not UTF-8 as surrogates, which cannot be encoded for hashing (a 500); our
    tokens are ASCII, so any other value is checked as "" (it can match no photo, and answers 403 invalid_delete_token
    once the photo is found: unknown and deleted photos still answer 404 and 410).
    """
    token = request.headers.get(DELETE_TOKEN_HEADER)
    return token, (token if token is None or token.isascii() else "")


def _token_refused(token: str | None) -> ApiError:
    if not token:
        return ApiError(403, "missing_delete_token", f"Send the delete token in the {DELETE_TOKEN_HEADER} header.")
    return ApiError(403, "invalid_delete_token", "This delete token does not match the photo.")


async def _share_channel(request: web.Request) -> str | None:
    """The optional ``{"channel": ...}`` body: empty is fine, anything else must be one of SHARE_CHANNELS."""
    raw = await read_body(request.content, MAX_SHARE_BODY_BYTES)
    if raw is None:
        raise ApiError(400, "invalid_json", "The share request body is too long.")
    if not raw.strip():
        return None
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[" * 1000 fits in the limit
        raise ApiError(400, "invalid_json", "The body must be a JSON object like {\"channel\": \"x\"}.") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object like {\"channel\": \"x\"}.")
    channel = body.get("channel")
    # isinstance first: a JSON object or array here is unhashable, and `in` on a frozenset would raise (a 500)
    if channel is not None and (not isinstance(channel, str) or channel not in SHARE_CHANNELS):
        raise ApiError(400, "invalid_channel", f"channel must be one of {', '.join(sorted(SHARE_CHANNELS))}.")
    return channel


@routes.post(SHARE_PATH)
async def share_photo(request: web.Request) -> web.Response:
    """Make the result public at /s/{share_id} (owner only, proven by the delete token); 201 first time, then 200."""
    deps = request.app[DEPS]
    photo_id = _photo_id(request)
    token, checked_token = _delete_token(request)
    channel = await _share_channel(request)
    try:
        shared = await handlers.share_photo(
            photo_id, checked_token, channel=channel, visitor_id=visitor_id_of(request), blobs=deps.blobs,
            events=deps.events,
        )
    except handlers.PhotoNotFound as exc:
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE) from exc
    except handlers.PhotoGone as exc:
        raise ApiError(410, "gone", "This photo was deleted.") from exc
    except handlers.WrongDeleteToken as exc:
        raise _token_refused(token) from exc
    except handlers.PhotoNotReady as exc:
        raise ApiError(409, "not_ready", "The result is not ready yet; share it once it is done.") from exc
    except handlers.BusUnavailable as exc:
        raise _broker_down() from exc
    except BlobStoreUnavailable as exc:
        raise _storage_down() from exc
    base = deps.settings.core.public_base_url.rstrip("/")
    body = {
        "share_id": shared.share_id,
        "share_url": f"{base}/s/{shared.share_id}",
        "card_urls": {fmt: f"{base}/cards/{shared.share_id}/{fmt}.png" for fmt in handlers.CARD_FORMATS},
        "cards_ready": shared.cards_ready,
    }
    return web.json_response(body, status=201 if shared.created else 200, headers=NO_STORE)


@routes.get(IMAGE_PATH)
async def photo_image(request: web.Request) -> web.Response:
    """The stored normalized JPEG (no metadata): for the result page. Private caching only."""
    deps = request.app[DEPS]
    photo_id = _photo_id(request)
    try:
        blob = await handlers.load_photo_image(photo_id, blobs=deps.blobs)
    except handlers.PhotoNotFound as exc:
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE) from exc
    except handlers.PhotoGone as exc:
        raise ApiError(410, "gone", "This photo was deleted.") from exc
    except handlers.PhotoNotKept as exc:
        message = "You asked us not to keep this photo, so it was deleted after scoring."
        raise ApiError(410, "not_kept", message) from exc
    except BlobStoreUnavailable as exc:
        raise _storage_down() from exc
    headers = {"Cache-Control": IMAGE_CACHE, "X-Content-Type-Options": "nosniff"}
    return web.Response(body=blob.data, content_type=blob.content_type, headers=headers)


@routes.get(OPENAPI_PATH)
async def openapi_document(request: web.Request) -> web.Response:
    """The hand-written OpenAPI 3.1 description of this API."""
    return web.json_response(OPENAPI)
