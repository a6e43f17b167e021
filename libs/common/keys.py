"""The blob-store key layout. One owner per prefix (ARCHITECTURE.md principle 1): each stage writes only its own.

- photos/{photo_id}.jpg           upload   normalized photo (no metadata)
- meta/{photo_id}.json            upload   owner data: delete-token hash, consent flags, share id, created_at
- tombstones/{photo_id}.json      upload   "this photo was deleted" (status 410 instead of a confusing 404)
- faces/{photo_id}.json           face     the face stage's outcome: faces found / no_face / failed
- faces/{photo_id}/{n}.png        face     aligned 256×256 chip of face n
- results/{photo_id}.json         scoring  the result document the API serves (or the scoring stage's failure)
- cards/{photo_id}/{fmt}-{v}.png  share    rendered result cards (and rendered.json: when card.rendered went out)
- shares/{share_id}.json          upload   public share record (share id → photo id), only once the owner shares
- shares-deleted/{share_id}.json  upload   "this share's photo was deleted" (no photo id: the page answers 410)
- rate-ids/{rate_id}.json         upload   the id raters see for a rateable photo → its photo id (never shown to them)
- features/{photo_id}/{n}.npy     scoring  face n's personalization vector (PersonalModel.face_vector), adults only
- ratepool/{photo_id}.json        scoring  the photo's faces offered for rating (owner opted in, no minors)
- personalize/raters/{vid}.json   scoring  a rater's personal-model state (services/scoring/personalize/store.py)
- personalize/faces/{photo_id}/{n}.json  scoring  face n's ratings as item statistics (personalize/item.py)
"""

from __future__ import annotations

import re

from libs.common.ids import ID_PATTERN

_ID = re.compile(ID_PATTERN)


def _check(identifier: str) -> str:
    if not _ID.fullmatch(identifier):
        raise ValueError(f"not a valid id: {identifier!r}")
    return identifier


def photo(photo_id: str) -> str:
    return f"photos/{_check(photo_id)}.jpg"


def meta(photo_id: str) -> str:
    return f"meta/{_check(photo_id)}.json"


def tombstone(photo_id: str) -> str:
    return f"tombstones/{_check(photo_id)}.json"


def faces_manifest(photo_id: str) -> str:
    return f"faces/{_check(photo_id)}.json"


def chips_prefix(photo_id: str) -> str:
    return f"faces/{_check(photo_id)}/"


def chip(photo_id: str, index: int) -> str:
    return f"{chips_prefix(photo_id)}{int(index)}.png"


def result(photo_id: str) -> str:
    return f"results/{_check(photo_id)}.json"


def cards_prefix(photo_id: str) -> str:
    return f"cards/{_check(photo_id)}/"


def card(photo_id: str, fmt: str, template_version: str) -> str:
    return f"{cards_prefix(photo_id)}{fmt}-{template_version}.png"


def cards_stamp(photo_id: str) -> str:
    """When card.rendered was first published for the photo (a redelivery publishes it again with that time)."""
    return f"{cards_prefix(photo_id)}rendered.json"


def share(share_id: str) -> str:
    return f"shares/{_check(share_id)}.json"


def rate_alias(rate_id: str) -> str:
    """A rateable photo's public alias: raters see only this id, because the photo id opens the owner's result."""
    return f"rate-ids/{_check(rate_id)}.json"


def share_tombstone(share_id: str) -> str:
    """What stays of a deleted photo's share: that it existed (its page says "deleted", not "never shared")."""
    return f"shares-deleted/{_check(share_id)}.json"


RATE_POOL_PREFIX = "ratepool/"


def face_features_prefix(photo_id: str) -> str:
    return f"features/{_check(photo_id)}/"


def face_features(photo_id: str, index: int) -> str:
    """Face ``index``'s personalization vector (.npy), written by scoring and read by its ratings consumer."""
    return f"{face_features_prefix(photo_id)}{int(index)}.npy"


def face_item_prefix(photo_id: str) -> str:
    return f"personalize/faces/{_check(photo_id)}/"


def face_item(photo_id: str, index: int) -> str:
    """Face ``index``'s item state (the ratings it received, as sufficient statistics), written by scoring."""
    return f"{face_item_prefix(photo_id)}{int(index)}.json"


def rate_pool_entry(photo_id: str) -> str:
    """The photo's entry in the rate-others pool: which of its faces may be shown to other visitors for rating."""
    return f"{RATE_POOL_PREFIX}{_check(photo_id)}.json"


def derived_keys_and_prefixes(photo_id: str) -> tuple[list[str], list[str]]:
    """Everything that must go when a photo is deleted: single keys, and prefixes to delete wholesale."""
    keys = [photo(photo_id), faces_manifest(photo_id), result(photo_id), rate_pool_entry(photo_id)]
    prefixes = [chips_prefix(photo_id), cards_prefix(photo_id), face_features_prefix(photo_id),
                face_item_prefix(photo_id)]
    return keys, prefixes
