"""Reading the upload form (multipart/form-data) at the edge: every malformed request becomes a precise 4xx.

The body is streamed part by part with hard limits, so a huge or hostile request costs bounded memory and never
reaches the catch-all 500. Client filenames are never read: blob keys come from server-made ids only.

Every byte read from the request counts against the total limit, the preamble before the first boundary included
(aiohttp's multipart reader discards that without any cap), and the whole form must arrive within a deadline (408
``body_timeout``), so a trickling or stalled body cannot hold an admission slot for ever.

``read_body`` (the whole of a small stream, capped) serves the JSON routes and the share proxy.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import RequestPayloadError

from services.upload.errors import ApiError

PHOTO_FIELD = "photo"
FLAG_FIELDS = {"rateable": False, "store": True}  # form field → default (opt-in to rating; store unless told not to)
MAX_PARTS = 8  # the photo, two flags and slack for harmless extras (e.g. a CSRF token); bounds work per request
MAX_FIELD_BYTES = 64  # flags are words like "true"; anything longer is not one of ours
READ_CHUNK_BYTES = 64 * 1024  # read parts in bounded chunks so a limit trips before the whole body is buffered
TRUE_WORDS = frozenset({"true", "1", "on", "yes"})  # "on" is what an HTML checkbox sends
FALSE_WORDS = frozenset({"false", "0", "off", "no"})
MULTIPART_TYPE = "multipart/form-data"
MAX_LOGGED_ERROR_CHARS = 300  # parser messages can quote client bytes; keep log lines bounded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadForm:
    """A syntactically valid upload: the raw photo bytes (not yet decoded) and the owner's choices."""

    photo: bytes
    rateable: bool
    store_photo: bool


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"The upload is larger than the limit of {limit // (1024 * 1024)} MB.")


def body_timeout(deadline_s: float) -> ApiError:
    return ApiError(408, "body_timeout", f"The upload did not arrive within {deadline_s:g} seconds; please retry.")


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def undecodable_body() -> ApiError:
    """aiohttp decodes a Content-Encoding (gzip, deflate, zstd) as it streams the body, and raises RequestPayloadError
    mid-read when the bytes are not in that encoding: the client's mistake, so a 400 rather than the catch-all 500."""
    return _bad("invalid_body", "The request body could not be decoded; check its Content-Encoding.")


async def read_body(stream: StreamReader, limit: int) -> bytes | None:
    """The whole body, or None past ``limit`` bytes (``read(n)`` of a stream returns only what has arrived so far);
    a request body that fails its Content-Encoding raises the 400 ``invalid_body``."""
    body = bytearray()
    try:
        async for chunk in stream.iter_chunked(READ_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                return None
    except RequestPayloadError as exc:
        raise undecodable_body() from exc
    return bytes(body)


async def read_upload_form(request: web.Request, *, max_photo_bytes: int, deadline_s: float) -> UploadForm:
    """Parse the multipart body: total capped at ``request.client_max_size``, the photo at ``max_photo_bytes``, the
    whole read at ``deadline_s`` seconds."""
    if request.content_type != MULTIPART_TYPE:
        raise ApiError(415, "not_multipart", f"Send the photo as {MULTIPART_TYPE} with a field named '{PHOTO_FIELD}'.")
    max_body = request.client_max_size
    if request.content_length is not None and request.content_length > max_body:
        raise too_large(max_photo_bytes)
    try:
        async with asyncio.timeout(deadline_s):
            return await _read_parts(request, max_photo_bytes=max_photo_bytes, max_body=max_body)
    except ApiError:
        raise
    except TimeoutError as exc:
        log.info("upload body too slow", extra={"deadline_s": deadline_s})
        raise body_timeout(deadline_s) from exc
    except RequestPayloadError as exc:
        raise undecodable_body() from exc
    except ConnectionError as exc:  # the client went away mid-body: its problem, not a server error to alert on
        raise _bad("incomplete_body", "The upload was interrupted before it finished.") from exc
    except UnicodeDecodeError as exc:  # a header or charset that is not text
        raise _bad("invalid_encoding", "A form field is not valid UTF-8.") from exc
    except (ValueError, LookupError, RuntimeError, AssertionError, HttpProcessingError) as exc:
        # aiohttp's multipart reader signals malformed input (missing boundary, bad headers, unknown charset) this way
        log.info("malformed multipart upload", extra={"error": str(exc)[:MAX_LOGGED_ERROR_CHARS]})
        raise _bad("malformed_multipart", "The multipart/form-data body could not be parsed.") from exc


class _CappedStream:
    """The request body as the multipart reader sees it: after every read, the bytes received so far
    (``total_bytes``, the preamble and part headers included) are checked against ``limit``."""

    def __init__(self, stream: StreamReader, limit: int, error: ApiError) -> None:
        self._stream = stream
        self._limit = limit
        self._error = error

    def __getattr__(self, name: str) -> object:  # at_eof, unread_data, ...: the stream's own
        return getattr(self._stream, name)

    def _check(self) -> None:
        if self._stream.total_bytes > self._limit:
            raise self._error

    async def readline(self, **kwargs: int | None) -> bytes:  # max_line_length= on aiohttp versions that have it
        line = await self._stream.readline(**kwargs)
        self._check()
        return line

    async def read(self, n: int = -1) -> bytes:
        data = await self._stream.read(n)
        self._check()
        return data

    async def readany(self) -> bytes:
        data = await self._stream.readany()
        self._check()
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self._stream.readexactly(n)
        self._check()
        return data


async def _read_parts(request: web.Request, *, max_photo_bytes: int, max_body: int) -> UploadForm:
    content = _CappedStream(request.content, max_body, too_large(max_photo_bytes))
    reader = MultipartReader(request.headers, cast(StreamReader, content))
    photo: bytes | None = None
    flags: dict[str, bool] = {}
    total = 0
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_PARTS:
            raise _bad("too_many_parts", f"The form has more than {MAX_PARTS} parts.")
        if not isinstance(part, BodyPartReader):
            raise _bad("malformed_multipart", "Nested multipart bodies are not accepted.")
        name = part.name
        if name == PHOTO_FIELD:
            if photo is not None:
                raise _bad("too_many_files", f"Send exactly one photo in the '{PHOTO_FIELD}' field.")
            photo = await _read_limited(part, min(max_photo_bytes, max_body - total), too_large(max_photo_bytes))
            total += len(photo)
        elif name in FLAG_FIELDS:
            if name in flags:
                raise _bad("duplicate_field", f"The field '{name}' appears more than once.")
            raw = await _read_limited(part, MAX_FIELD_BYTES, _bad("invalid_field", f"The field '{name}' is too long."))
            total += len(raw)
            flags[name] = _parse_flag(name, raw)
        else:
            if _has_filename(part):
                raise _bad("unexpected_file", f"Only one file is accepted, in the field '{PHOTO_FIELD}'.")
            total += len(await _read_limited(part, max_body - total, too_large(max_photo_bytes)))  # ignored extra
    if photo is None:
        raise _bad("missing_photo", f"The form has no '{PHOTO_FIELD}' field.")
    return UploadForm(
        photo=photo,
        rateable=flags.get("rateable", FLAG_FIELDS["rateable"]),
        store_photo=flags.get("store", FLAG_FIELDS["store"]),
    )


async def _read_limited(part: BodyPartReader, limit: int, error: ApiError) -> bytes:
    """Read one part, raising ``error`` as soon as it exceeds ``limit`` bytes (never buffering much past it)."""
    buf = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        buf += chunk
        if len(buf) > limit:
            raise error
    return bytes(buf)


def _parse_flag(name: str, raw: bytes) -> bool:
    try:
        word = raw.decode("utf-8").strip().lower()
    except UnicodeDecodeError as exc:
        raise _bad("invalid_encoding", f"The field '{name}' is not valid UTF-8.") from exc
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad("invalid_field", f"The field '{name}' must be true or false.")


def _has_filename(part: BodyPartReader) -> bool:
    """Whether the part is a file; a garbled filename still counts as one (we never use its value)."""
    try:
        return part.filename is not None
    except (ValueError, LookupError):
        return True
