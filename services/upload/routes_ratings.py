"""Rate-others and personal scores on the public API: the upload service's edge for personalization.

- POST /api/v1/ratings                    validate, check the face is rateable, publish rating.submitted (202) with
                                          the rated face's gender and the rater's own (face 0 of ``rater_photo_id``).
- GET  /api/v1/rate/next?count=N          faces to rate, picked by the scoring service (empty when it is away).
- GET  /api/v1/rate/faces/{rate_id}/{n}   the face chip of a rateable adult face (all a rater ever sees of a photo).

Raters never learn a photo id: it opens the owner's whole result (/p/{id}, the photo, every face). A rateable photo
has a second, public id (``PhotoMeta.rate_id``, keys.rate_alias) that the queue, the chip URL and the rating body use.
- GET  /api/v1/photos/{id}                gains ``personal_score`` per face for the viewer, and the face's visitors'
                                          verdict (``crowd_ratings``, ``crowd_score``) (middleware below).

The scoring service owns rater states, face vectors and the rate pool; this service only talks to it over its internal
HTTP API (services/scoring/personal_api.py), like the share proxy does, and never lets it turn an answer into a 5xx:
personal scores are a bonus, so any failure or slowness there means "no personal score" here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore, BlobStoreUnavailable
from libs.common.documents import RateAlias, read_document
from libs.common.events import RatingSubmitted
from libs.common.ids import ID_PATTERN
from libs.common.settings import Settings
from services.upload import handlers
from services.upload.deps import DEPS
from services.upload.errors import ApiError, unavailable
from services.upload.form import read_body
from services.upload.publishing import BusUnavailable
from services.upload.ratings import (
    MAX_FACE_INDEX,
    MAX_RATING_BODY_BYTES,
    RatingRefused,
    RatingRequest,
    check_rateable,
    parse_rating,
    rated_gender_of,
    rater_gender_of,
)
from services.upload.status import StageDocuments
from services.upload.web.visitor import visitor_id_of

log = logging.getLogger(__name__)

RATINGS_PATH = "/api/v1/ratings"
RATE_NEXT_PATH = "/api/v1/rate/next"
RATE_FACE_PATH = "/api/v1/rate/faces/{rate_id}/{face_index}"
PERSONAL_PATH = "/api/v1/personal"  # the scoring service's per-viewer scores of one photo
DEFAULT_COUNT = 5
MAX_COUNT = 20
PERSONAL_TIMEOUT_S = 0.5  # the status poll must stay snappy: a personal score that is late is simply left out
RATE_NEXT_TIMEOUT_S = 3.0  # the rate page waits on it, but a spinner past 3 s is worse than "nobody to rate"
CONNECT_TIMEOUT_S = 1.0
CHIP_CACHE = "private, max-age=3600"
NO_STORE = {"Cache-Control": "no-store"}
_ID = re.compile(ID_PATTERN)
_SMALL_INT = re.compile(r"[0-9]{1,4}")  # ASCII digits only (str.isdigit() takes '²', int() refuses it), and short
_PHOTO_STATUS = re.compile(rf"/api/v1/photos/({ID_PATTERN.removeprefix('^').removesuffix('$')})")

routes = web.RouteTableDef()


class ScoringClient:
    """JSON GETs against the scoring service's internal API; None on any failure (callers degrade, never fail)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def get_json(self, path: str, params: dict[str, str], timeout_s: float) -> dict[str, Any] | None:
        if self.session is None:
            return None
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s))
        try:
            async with self.session.get(f"{self.base_url}{path}", params=params, timeout=timeout) as resp:
                if resp.status != 200:
                    log.info("scoring answered %s", resp.status, extra={"path": path})
                    return None
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError, RecursionError) as exc:  # Recursion: nested too deep
            # the error's type only: its repr holds the request URL, and with it the viewer's visitor id
            log.info("scoring unavailable", extra={"path": path, "error": type(exc).__name__})
            return None
        return body if isinstance(body, dict) else None


SCORING = web.AppKey("scoring_client", ScoringClient)


def scoring_internal_url(settings: Settings) -> str:
    """HOWHOT_SCORING_INTERNAL_URL, else the scoring service's host and port."""
    explicit = settings.scoring.internal_url
    return explicit.rstrip("/") if explicit else f"http://{settings.scoring.host}:{settings.scoring.port}"


def _scoring_client_context(client: ScoringClient) -> Callable[[web.Application], AsyncIterator[None]]:
    """One pooled session for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client.session = aiohttp.ClientSession()
        yield
        await client.session.close()
        client.session = None

    return ctx


def _viewer(request: web.Request) -> str | None:
    """The visitor cookie, else a valid ``?viewer=`` (API clients without cookies)."""
    viewer = visitor_id_of(request)
    if viewer:
        return viewer
    param = request.query.get("viewer")
    return param if param and _ID.fullmatch(param) else None


async def _rater_photo_documents(photo_id: str | None, blobs: BlobStore) -> StageDocuments | None:
    """The documents of the rater's own photo, read alongside the rated one's; None when the request names none, or
    when storage fails or a document is unreadable for it alone (the rater's gender is a side field: the rating goes
    on without it)."""
    if photo_id is None:
        return None
    try:
        return await handlers.load_stage_documents(photo_id, blobs=blobs)
    except (BlobStoreUnavailable, ValueError) as exc:  # ValueError: pydantic's ValidationError of a damaged document
        log.info("rater photo unreadable; rater gender left unknown", extra={"photo_id": photo_id, "error": repr(exc)})
        return None


async def _photo_of(rate_id: str, blobs: BlobStore) -> str:
    """The photo a rate id stands for; RatingRefused(404) when there is none (never issued, or the photo deleted)."""
    alias = await read_document(blobs, keys.rate_alias(rate_id), RateAlias)
    if alias is None:
        raise RatingRefused(404, "not_found", "No face to rate with this id.")
    return alias.photo_id


@routes.post(RATINGS_PATH)
async def submit_rating(request: web.Request) -> web.Response:
    """Accept one rating: 202 once rating.submitted is on the bus (the scoring service learns from it)."""
    deps = request.app[DEPS]
    rater = visitor_id_of(request)
    if rater is None:
        raise ApiError(400, "missing_visitor", "Open the rating page first (it sets the visitor cookie).")
    try:
        raw = await read_body(request.content, MAX_RATING_BODY_BYTES)
        if raw is None:
            raise RatingRefused(400, "invalid_json", "The rating body is too long.")
        rating = parse_rating(raw)
        if rating.rate_id is not None:
            rating = dataclasses.replace(rating, photo_id=await _photo_of(rating.rate_id, deps.blobs))
        assert rating.photo_id is not None
        docs, own = await asyncio.gather(
            handlers.load_stage_documents(rating.photo_id, blobs=deps.blobs),
            _rater_photo_documents(rating.rater_photo_id, deps.blobs),
        )
        check_rateable(rating, rater_id=rater, tombstoned=docs.tombstoned, meta=docs.meta, result=docs.result)
        rater_gender = None if own is None else rater_gender_of(
            rater_id=rater, tombstoned=own.tombstoned, meta=own.meta, result=own.result)
    except RatingRefused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from exc
    except BlobStoreUnavailable as exc:
        raise unavailable("storage_unavailable", "Storage is unavailable for a moment; please retry.") from exc
    event = RatingSubmitted(visitor_id=rater, photo_id=rating.photo_id, face_index=rating.face_index,
                            scale=rating.scale, rating=rating.rating, rated_gender=rated_gender_of(rating, docs.result),
                            rater_gender=rater_gender, producer="upload")
    try:
        await deps.events.publish(event)
    except BusUnavailable as exc:
        raise unavailable("broker_unavailable", "We cannot take ratings for a moment; please retry.") from exc
    return web.json_response({"status": "accepted", "event_id": str(event.event_id)}, status=202, headers=NO_STORE)


@routes.get(RATE_NEXT_PATH)
async def rate_next(request: web.Request) -> web.Response:
    """Faces for this visitor to rate; ``{"faces": []}`` when there are none or the scoring service is away."""
    raw = request.query.get("count", str(DEFAULT_COUNT))
    if not _SMALL_INT.fullmatch(raw) or not 1 <= int(raw) <= MAX_COUNT:
        raise ApiError(400, "invalid_count", f"count must be an integer from 1 to {MAX_COUNT}.")
    params = {"count": str(int(raw))}
    viewer = visitor_id_of(request)
    if viewer:
        params["viewer"] = viewer
    answer = await request.app[SCORING].get_json(RATE_NEXT_PATH, params, RATE_NEXT_TIMEOUT_S)
    faces = []
    for face in _answer_list(answer, "faces", RATE_NEXT_PATH):
        rate_id, index = face.get("rate_id"), face.get("face_index")  # the photo id stays with us (module docstring)
        if isinstance(rate_id, str) and _ID.fullmatch(rate_id) and _is_face_index(index):
            faces.append({"rate_id": rate_id, "face_index": index,
                          "image_url": RATE_FACE_PATH.format(rate_id=rate_id, face_index=index)})
    return web.json_response({"faces": faces}, headers=NO_STORE)


@routes.get(RATE_FACE_PATH)
async def rate_face_image(request: web.Request) -> web.Response:
    """The aligned face chip, only for faces anyone may rate: the rest of the photo is never shown to raters."""
    deps = request.app[DEPS]
    rate_id, index = request.match_info["rate_id"], request.match_info["face_index"]
    if not _ID.fullmatch(rate_id) or not _SMALL_INT.fullmatch(index):
        raise ApiError(404, "not_found", "No such face.")
    try:
        photo_id = await _photo_of(rate_id, deps.blobs)
        docs = await handlers.load_stage_documents(photo_id, blobs=deps.blobs)
        probe = RatingRequest(photo_id=photo_id, face_index=int(index), scale="hot_or_not", rating=1.0)
        check_rateable(probe, rater_id="", tombstoned=docs.tombstoned, meta=docs.meta, result=docs.result)
        blob = await deps.blobs.get(keys.chip(photo_id, int(index)))
    except (RatingRefused, BlobNotFound) as exc:
        raise ApiError(404, "not_found", "No such face.") from exc
    except BlobStoreUnavailable as exc:
        raise unavailable("storage_unavailable", "Storage is unavailable for a moment; please retry.") from exc
    return web.Response(body=blob.data, content_type=blob.content_type,
                        headers={"Cache-Control": CHIP_CACHE, "X-Content-Type-Options": "nosniff"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_face_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FACE_INDEX


def _answer_list(answer: dict[str, Any] | None, field: str, path: str) -> list[dict[str, Any]]:
    """The scoring answer's list of objects under ``field``: items that are not objects are dropped, and a missing or
    malformed list is read as an empty one (the same as scoring being away), so its answer can never cause a 5xx."""
    if answer is None:
        return []
    items = answer.get(field, [])
    if not isinstance(items, list):
        log.info("scoring answer malformed", extra={"path": path, "field": field})
        return []
    return [item for item in items if isinstance(item, dict)]


def merge_personal(body: dict[str, Any], personal: dict[str, Any]) -> dict[str, Any]:
    """Add the scoring service's answer to the status body: per face ``personal_score`` (only once it is personal),
    ``personal_source`` and ``personal_ratings``, plus ``personal_min_ratings`` so the page can say "rate N more";
    and what other visitors made of the face: ``crowd_ratings`` (how many rated it) and, once enough have,
    ``crowd_score``."""
    faces = _answer_list(personal, "faces", PERSONAL_PATH)
    by_index = {f["index"]: f for f in faces if _is_face_index(f.get("index"))}  # an unhashable index is dropped
    for face in body.get("faces", []):
        if face.get("withheld_reason") or face.get("attractiveness") is None:
            continue  # withheld stays withheld, whatever the other service says
        answer = by_index.get(face.get("index"))
        if not answer or "personal_score" not in answer:
            continue
        if isinstance(answer.get("face_ratings"), int):
            face["crowd_ratings"] = answer["face_ratings"]
        if isinstance(answer.get("crowd_score"), int | float):
            face["crowd_score"] = answer["crowd_score"]
        face["personal_source"] = answer.get("source")
        face["personal_ratings"] = answer.get("n_ratings")
        score = answer["personal_score"]
        if answer.get("source") in ("personal", "demographic_prior") and _is_number(score):
            face["personal_score"] = score
    if isinstance(personal.get("min_ratings"), int):
        body["personal_min_ratings"] = personal["min_ratings"]
    return body


@web.middleware
async def personal_scores(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """GET /api/v1/photos/{id} for a known viewer: add personal scores, best effort (the status route stays as is)."""
    response = await handler(request)
    match = _PHOTO_STATUS.fullmatch(request.path) if request.method == "GET" else None
    if match is None or response.status != 200 or not isinstance(response, web.Response):
        return response
    viewer = _viewer(request)
    if viewer is None or response.body is None:
        return response
    try:
        body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return response
    if not isinstance(body, dict) or body.get("status") != "done" or not body.get("faces"):
        return response
    personal = await request.app[SCORING].get_json(
        PERSONAL_PATH, {"viewer": viewer, "photo_id": match.group(1)}, PERSONAL_TIMEOUT_S
    )
    if personal is not None:
        response.body = json.dumps(merge_personal(body, personal)).encode()
    return response


def install_ratings(app: web.Application, settings: Settings, *, scoring_url: str | None = None) -> None:
    """Mount the rating routes, the personal-score middleware and the pooled client to the scoring service."""
    client = ScoringClient(scoring_url or scoring_internal_url(settings))
    app[SCORING] = client
    app.cleanup_ctx.append(_scoring_client_context(client))
    app.middlewares.append(personal_scores)
    app.router.add_routes(routes)
