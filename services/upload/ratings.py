"""Rating requests: parse POST /api/v1/ratings bodies and decide whether a face may be rated. Pure (no I/O), so every
refusal is unit-tested without a server.

A face may be rated only if its owner opted in (``PhotoMeta.rateable``), it was scored as an adult (a face withheld as
a probable minor never enters personalization), and the rater is not its owner. Refusals carry the API's status and
code; the route turns them into the standard error body.

The rating event also carries two genders for the dashboard (hot ratings by gender, without read-time joins): the
rated face's (``rated_gender_of``, from the result document the check already read) and the rater's own
(``rater_gender_of``): face 0 of the photo the website names as the rater's latest (``rater_photo_id``). That one is
a side field: a photo of someone else is refused (403, so nobody can attach another visitor's face to their
ratings), but a photo that is gone, deleted, not scored yet or faceless just leaves it unknown — a rating is never lost
over it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.events import RATING_SCALES
from libs.common.ids import ID_PATTERN

MAX_RATING_BODY_BYTES = 1024  # a full body with rater_photo_id is ~160 bytes
MAX_FACE_INDEX = 63  # RatingSubmitted.face_index bound
_ID = re.compile(ID_PATTERN)

Scale = Literal["hot_or_not", "1to10"]
Gender = Literal["female", "male"]
GENDERS: tuple[Gender, ...] = ("female", "male")  # RatingSubmitted's rated_gender / rater_gender


@dataclass(frozen=True)
class RatingRequest:
    """A well-formed rating (the face it names may still not exist or not be rateable)."""

    photo_id: str | None  # None until the rate id is resolved: a request names the face by one of the two
    face_index: int
    scale: Scale
    rating: float
    rater_photo_id: str | None = None  # the rater's own latest photo, as the website knows it (optional)
    rate_id: str | None = None  # the alias /api/v1/rate/next shows raters (PhotoMeta.rate_id)


class RatingRefused(Exception):
    """The request cannot be accepted: HTTP status, stable code, message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _bad(code: str, message: str) -> RatingRefused:
    return RatingRefused(400, code, message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_rating(raw: bytes) -> RatingRequest:
    """The body as a RatingRequest, or RatingRefused(400) naming the first thing wrong with it."""
    if len(raw) > MAX_RATING_BODY_BYTES:
        raise _bad("invalid_json", "The rating body is too long.")
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: "[" * 1000 fits in the limit
        raise _bad("invalid_json", "The body must be a JSON object.") from exc
    if not isinstance(body, dict):
        raise _bad("invalid_json", "The body must be a JSON object.")
    photo_id, rate_id = body.get("photo_id"), body.get("rate_id")
    if (photo_id is None) == (rate_id is None):
        raise _bad("invalid_face", "Name the face's photo by rate_id (from /api/v1/rate/next) or photo_id, not both.")
    if photo_id is not None and (not isinstance(photo_id, str) or not _ID.fullmatch(photo_id)):
        raise _bad("invalid_photo_id", "photo_id must be a photo id.")
    if rate_id is not None and (not isinstance(rate_id, str) or not _ID.fullmatch(rate_id)):
        raise _bad("invalid_rate_id", "rate_id must be an id from /api/v1/rate/next.")
    face_index = body.get("face_index")
    if not _is_int(face_index) or not 0 <= face_index <= MAX_FACE_INDEX:
        raise _bad("invalid_face_index", f"face_index must be an integer from 0 to {MAX_FACE_INDEX}.")
    scale = body.get("scale", "hot_or_not")
    if not isinstance(scale, str) or scale not in RATING_SCALES:  # a JSON object here is unhashable: `in` would raise
        raise _bad("invalid_scale", f"scale must be one of {', '.join(RATING_SCALES)}.")
    rating = body.get("rating")
    low, high = RATING_SCALES[scale]
    # ints are exact (math.isfinite would overflow on a 400-digit one); only floats can be inf or nan
    if isinstance(rating, bool) or not isinstance(rating, int | float) or (
        isinstance(rating, float) and not math.isfinite(rating)
    ):
        raise _bad("invalid_rating", "rating must be a number.")
    if scale == "hot_or_not" and rating not in (0, 1):
        raise _bad("invalid_rating", "A hot-or-not rating is 0 (not) or 1 (hot).")
    if not low <= rating <= high:
        raise _bad("invalid_rating", f"rating must be between {low:g} and {high:g} on the {scale} scale.")
    rater_photo_id = body.get("rater_photo_id")  # absent or null: the browser owns no photo
    if rater_photo_id is not None and (not isinstance(rater_photo_id, str) or not _ID.fullmatch(rater_photo_id)):
        raise _bad("invalid_rater_photo_id", "rater_photo_id must be a photo id (or left out).")
    return RatingRequest(photo_id=photo_id, face_index=face_index, scale=scale, rating=float(rating),
                         rater_photo_id=rater_photo_id, rate_id=rate_id)


def check_rateable(
    request: RatingRequest,
    *,
    rater_id: str,
    tombstoned: bool,
    meta: PhotoMeta | None,
    result: ResultDocument | None,
) -> None:
    """Raise RatingRefused unless ``rater_id`` may rate this face now (404 unknown, 403 not allowed, 409 not ready)."""
    if tombstoned or meta is None:
        raise RatingRefused(404, "not_found", "No photo with this id.")
    if not meta.rateable:
        raise RatingRefused(403, "not_rateable", "The owner of this photo did not offer it for rating.")
    if meta.visitor_id is not None and meta.visitor_id == rater_id:
        raise RatingRefused(403, "own_photo", "You cannot rate your own photo.")
    if result is None or result.status != "done":
        raise RatingRefused(409, "not_ready", "This photo has not been scored yet.")
    face = next((f for f in result.faces if f.get("index") == request.face_index), None)
    if face is None:
        raise RatingRefused(404, "face_not_found", "This photo has no face with that index.")
    if face.get("withheld_reason") or face.get("attractiveness") is None:
        raise RatingRefused(403, "face_withheld", "This face cannot be rated.")


def _gender(face: dict[str, Any] | None) -> Gender | None:
    gender = face.get("gender") if face is not None else None
    return gender if gender in GENDERS else None


def _face(result: ResultDocument, index: int) -> dict[str, Any] | None:
    return next((f for f in result.faces if f.get("index") == index), None)


def rated_gender_of(request: RatingRequest, result: ResultDocument | None) -> Gender | None:
    """The rated face's estimated gender, as the rater was shown it (call after ``check_rateable`` passed)."""
    if result is None or result.status != "done":
        return None
    return _gender(_face(result, request.face_index))


def rater_gender_of(
    *, rater_id: str, tombstoned: bool, meta: PhotoMeta | None, result: ResultDocument | None
) -> Gender | None:
    """The gender of face 0 of the rater's own photo (the request's ``rater_photo_id``), or None when unknown.

    RatingRefused(403, not_your_photo) when the photo exists and belongs to someone else (or to nobody: uploaded
    without a visitor cookie). Deleted, unknown, not yet scored (or failed) and faceless photos answer None: the rating
    is accepted with the rater's gender unknown. A deleted photo is None before ownership is looked at (its meta may
    still exist for a moment while the deletion finishes), so it never answers 403 either.
    """
    if tombstoned or meta is None:
        return None
    if meta.visitor_id is None or meta.visitor_id != rater_id:
        raise RatingRefused(403, "not_your_photo", "rater_photo_id must be one of your own photos.")
    if result is None or result.status != "done":
        return None
    return _gender(_face(result, 0))
