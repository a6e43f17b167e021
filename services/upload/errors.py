"""The API's one error shape, ``{"error": {"code", "message"}}``, and the middleware that guarantees it.

Clients (the website, the CLI, third parties) branch on ``code``; ``message`` is for humans. Every refusal of client
input is raised as :class:`ApiError` at the edge, so the catch-all 500 below only ever sees our own bugs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # long enough for a producer to reconnect to a restarted broker, short enough to feel like a retry

# aiohttp raises its own HTTPExceptions (unknown route, wrong method, body over client_max_size): give them our codes.
HTTP_ERROR_CODES: Mapping[int, str] = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
_HEADERS_NOT_COPIED = frozenset({"content-type", "content-length"})  # the JSON body brings its own


class ApiError(Exception):
    """A refusal with an HTTP status, a stable machine-readable code and a message safe to show the user."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, headers=self.headers)


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON error body every non-2xx answer of this service carries."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def unavailable(code: str, message: str) -> ApiError:
    """503 with Retry-After: the request was fine, a backend was not; nothing was accepted, so retrying is safe."""
    return ApiError(503, code, message, headers={"Retry-After": str(RETRY_AFTER_S)})


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into JSON errors, and any unexpected exception into a logged JSON 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in _HEADERS_NOT_COPIED}
        code = HTTP_ERROR_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason, headers=headers)
    except Exception:
        log.exception("unhandled error", extra={"method": request.method, "path": request.path})
        return error_response(500, "internal_error", "Something went wrong on our side; please try again later.")
