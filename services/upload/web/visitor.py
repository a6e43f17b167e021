"""The anonymous visitor cookie and where a visitor came from (attribution), read and written at the edge.

Three first-party cookies, all HttpOnly and SameSite=Lax (sent on top-level navigations from a shared link, never on
cross-site subrequests):

- ``hh_vid``  a random visitor id (new_id(), one year): counts visitors, links a page view to a later upload.
- ``hh_ref``  the share id that brought the visitor (set here for ``/?ref=…``, and by the share service on ``/s/…``).
- ``hh_utm``  the last non-direct landing's utm_* parameters and external referrer (base64url JSON, 30 days).

The API reads them when a browser uploads, so PhotoUploaded carries visitor and attribution; API clients without
cookies get an empty Attribution and no visitor id. Malformed cookie values are ignored, never trusted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from libs.common.events import Attribution
from libs.common.ids import ID_PATTERN, new_id

VISITOR_COOKIE = "hh_vid"
REFERRAL_COOKIE = "hh_ref"
LANDING_COOKIE = "hh_utm"
REFERRAL_QUERY = "ref"  # /?ref=<share_id>: a share link that skipped the share page still credits the sharer
VISITOR_MAX_AGE_S = 365 * 24 * 3600  # one year: long enough to count returning visitors, short enough to age out
ATTRIBUTION_MAX_AGE_S = 30 * 24 * 3600  # the attribution window: an upload within 30 days credits the share
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_UTM_CHARS = 200  # Attribution's limit; longer values are truncated rather than rejected (they come from links)
MAX_REFERRER_CHARS = 2048  # Attribution's limit for page views
MAX_COOKIE_REFERRER_CHARS = 512  # the cookie must stay far below the ~4 KB browsers allow per cookie
MAX_LANDING_COOKIE_CHARS = 2000  # anything longer was not written by us: ignore it
_ID = re.compile(ID_PATTERN)


def _valid_id(value: str | None) -> str | None:
    return value if value and _ID.fullmatch(value) else None


def visitor_id_of(request: web.Request) -> str | None:
    """The visitor id from the cookie, or None (no cookie, or a value we did not issue)."""
    return _valid_id(request.cookies.get(VISITOR_COOKIE))


def referral_of(request: web.Request) -> str | None:
    """The share id that brought this visitor (cookie), if well-formed."""
    return _valid_id(request.cookies.get(REFERRAL_COOKIE))


def _utm_from(params: Mapping[str, str]) -> dict[str, str]:
    return {k: params[k][:MAX_UTM_CHARS] for k in UTM_FIELDS if params.get(k)}


def _encode_landing(fields: Mapping[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(dict(fields), separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_landing(raw: str | None) -> dict[str, str]:
    """The landing cookie's fields; anything malformed (edited, truncated, foreign) decodes to nothing."""
    if not raw or len(raw) > MAX_LANDING_COOKIE_CHARS:
        return {}
    try:
        value: Any = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: "[[[[…" nested past the parser's depth
        return {}
    if not isinstance(value, dict):
        return {}
    allowed = {*UTM_FIELDS, "referrer"}
    return {k: v for k, v in value.items() if k in allowed and isinstance(v, str)}


def stored_attribution(request: web.Request) -> Attribution:
    """What the cookies say about how this visitor arrived: used for the upload's PhotoUploaded.attribution."""
    landing = _decode_landing(request.cookies.get(LANDING_COOKIE))
    try:
        return Attribution(share_id=referral_of(request), **landing)
    except ValidationError:  # a value that fits the cookie but not the event: drop the landing, keep the referral
        return Attribution(share_id=referral_of(request))


def _external_referrer(request: web.Request) -> str | None:
    """The Referer header when it is another site's (our own pages referring to each other say nothing); one that is
    not a URL at all (``http://[x``, which urlsplit refuses with ValueError) says nothing either."""
    referrer = request.headers.get("Referer")
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).netloc
    except ValueError:
        return None
    return None if not host or host == request.host else referrer


@dataclass(frozen=True)
class Visit:
    """One page view's visitor: the id (new or from the cookie), and the attribution to report for this view."""

    visitor_id: str
    new_visitor: bool
    attribution: Attribution
    referral: str | None  # a share id from ?ref= to remember in hh_ref
    landing: dict[str, str]  # utm_*/referrer of this landing to remember in hh_utm (empty: keep what we have)


def read_visit(request: web.Request) -> Visit:
    """Identify the visitor and work out this view's attribution: fresh link parameters win over remembered ones.

    The attribution's referrer is this view's external referrer or None; navigation between our own pages records
    none (it says nothing about where visitors come from, and its URLs name photos).
    """
    existing = visitor_id_of(request)
    referral = _valid_id(request.query.get(REFERRAL_QUERY))
    landing = _utm_from(request.query)
    referrer = _external_referrer(request)
    if referrer and landing:  # a campaign landing: remember where it came from too
        landing["referrer"] = referrer[:MAX_COOKIE_REFERRER_CHARS]
    elif referrer:
        landing = {"referrer": referrer[:MAX_COOKIE_REFERRER_CHARS]}
    remembered = stored_attribution(request)
    fields = {**remembered.model_dump(exclude_none=True), **landing}
    # This view's own referrer, and only another site's: a same-origin Referer is the full URL of one of our pages
    # (e.g. the owner's /p/{photo_id}), which would tie this view to a photo that deleting it cannot find.
    fields["referrer"] = (referrer or "")[:MAX_REFERRER_CHARS] or None
    fields["share_id"] = referral or remembered.share_id
    try:
        attribution = Attribution(**fields)
    except ValidationError:
        attribution = Attribution(share_id=fields["share_id"])
    return Visit(
        visitor_id=existing or new_id(),
        new_visitor=existing is None,
        attribution=attribution,
        referral=referral,
        landing=landing,
    )


def remember_visit(response: web.StreamResponse, visit: Visit, *, secure: bool) -> None:
    """Set the cookies this visit needs: the visitor id once, the referral and landing only when they are new."""
    options: dict[str, Any] = {"path": "/", "httponly": True, "samesite": "Lax", "secure": secure}
    if visit.new_visitor:
        response.set_cookie(VISITOR_COOKIE, visit.visitor_id, max_age=VISITOR_MAX_AGE_S, **options)
    if visit.referral:
        response.set_cookie(REFERRAL_COOKIE, visit.referral, max_age=ATTRIBUTION_MAX_AGE_S, **options)
    if visit.landing:
        response.set_cookie(LANDING_COOKIE, _encode_landing(visit.landing), max_age=ATTRIBUTION_MAX_AGE_S, **options)
