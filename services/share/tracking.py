"""Who opened a share page and where they came from: the visitor cookie, the referral cookie and share.viewed.

The referral cookie ``hh_ref`` is how the upload service attributes a friend's upload to the share that brought them
(last touch: the most recent share page a visitor opened wins). Both cookies are first-party and SameSite=Lax, so
they are sent when a friend follows a link from another site to us, and never on cross-site subrequests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode

from libs.common.events import Attribution, ShareViewed
from libs.common.ids import ID_PATTERN, new_id

VISITOR_COOKIE = "hh_vid"
REF_COOKIE = "hh_ref"
REF_COOKIE_MAX_AGE_S = 30 * 24 * 3600  # a friend who comes back within a month still counts for the sharer
VISITOR_COOKIE_MAX_AGE_S = 365 * 24 * 3600  # returning visitors are recognised for a year, then start afresh
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
MAX_UTM_CHARS = 200  # Attribution's limit; longer values are truncated rather than failing the page
MAX_REFERRER_CHARS = 2048  # Attribution's limit
LINK_PREVIEW_BOTS = re.compile(  # crawlers fetching og tags for a preview: not a person viewing the share
    r"facebookexternalhit|facebot|twitterbot|slackbot|discordbot|whatsapp|telegrambot|linkedinbot|"
    r"skypeuripreview|pinterest|redditbot|applebot|googlebot|bingbot|embedly|iframely|vkshare|snapchat",
    re.IGNORECASE,
)

_ID = re.compile(ID_PATTERN)


def is_valid_id(value: str | None) -> bool:
    """Whether ``value`` looks like one of our unguessable ids (anything else from a cookie or URL is ignored)."""
    return value is not None and _ID.fullmatch(value) is not None


def visitor_id(cookies: Mapping[str, str]) -> tuple[str, bool]:
    """The visitor's id from ``hh_vid``, or a fresh one; the flag says whether the cookie must be (re)set."""
    current = cookies.get(VISITOR_COOKIE)
    if is_valid_id(current):
        assert current is not None
        return current, False
    return new_id(), True


def is_link_preview_bot(user_agent: str | None) -> bool:
    """Link-preview crawlers fetch every shared URL once per platform; counting them would inflate the loop."""
    return bool(user_agent) and LINK_PREVIEW_BOTS.search(user_agent or "") is not None


def landing_utm(query: Mapping[str, str]) -> dict[str, str]:
    """The utm_* parameters of this landing, trimmed to the contract's limits."""
    return {name: query[name][:MAX_UTM_CHARS] for name in UTM_FIELDS if query.get(name)}


def try_it_href(share_id: str, query: Mapping[str, str]) -> str:
    """The call to action: ``/?ref={share_id}`` plus this landing's utm_* parameters, so the upload service records
    the campaign (in its hh_utm cookie) for the friend's own upload, not just the share that brought them."""
    return "/?" + urlencode({"ref": share_id, **landing_utm(query)})


def share_viewed(
    share_id: str, photo_id: str, visitor: str, referrer: str | None, query: Mapping[str, str]
) -> ShareViewed:
    """The share.viewed event for one page view; free-text fields are trimmed to the contract's limits."""
    utm = landing_utm(query)
    ref = referrer[:MAX_REFERRER_CHARS] if referrer else None
    return ShareViewed(
        share_id=share_id,
        photo_id=photo_id,
        visitor_id=visitor,
        referrer=ref,
        attribution=Attribution(share_id=share_id, referrer=ref, **utm),
        producer="share",
    )
