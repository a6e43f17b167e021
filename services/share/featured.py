"""Which face a card and a share page feature, and what they say about it.

The consumer (rendering cards), the card route (rendering on demand) and the share page (og:title) must all pick the
same face and print the same numbers, so the choice and the wording live here, as pure functions.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from libs.common.documents import FacesManifest, ResultDocument
from libs.common.events import FaceResult
from services.share.content import BRAND, SCORE_MAX, SCORE_MIN

SHARE_PATH = "/s/{share_id}"
CARD_PATH = "/cards/{share_id}/{fmt}.png"


def public_url(public_base_url: str, path: str) -> str:
    """An absolute URL on the public website (the upload service proxies /s/* and /cards/* to us): crawlers that
    build link previews ignore relative og:image URLs."""
    return public_base_url.rstrip("/") + path


def share_url(public_base_url: str, share_id: str) -> str:
    """The short link printed on the card and used as og:url."""
    return public_url(public_base_url, SHARE_PATH.format(share_id=share_id))


def choose_featured_face(faces: list[FaceResult], manifest: FacesManifest | None) -> FaceResult | None:
    """The largest scored face (by the face stage's box size), ties and a missing manifest → the lowest index.

    The photo's subject is usually the biggest face; bystanders are small. ``None`` when no face was scored.
    """
    if not faces:
        return None
    sizes = {box.index: box.size for box in manifest.faces} if manifest is not None else {}
    return min(faces, key=lambda face: (-sizes.get(face.index, 0.0), face.index))


def faces_from_result(result: ResultDocument) -> list[FaceResult]:
    """The scored faces of a result document (its face dicts carry FaceResult's fields plus extras we ignore);
    entries that are not valid face results are skipped rather than failing the whole page."""
    if result.status != "done":
        return []
    fields = FaceResult.model_fields.keys()
    faces: list[FaceResult] = []
    for raw in result.faces:
        try:
            faces.append(FaceResult.model_validate({k: v for k, v in raw.items() if k in fields}))
        except ValidationError:
            continue
    return faces


def whole_years(face: FaceResult) -> tuple[int, int, int]:
    """Age and its range as the card prints them: whole years, and the range always contains the age."""
    age = round(face.age)
    low = min(math.floor(face.age_low), age)
    high = max(math.ceil(face.age_high), age)
    return age, low, high


def score_is_valid(score: float | None) -> bool:
    """Whether a score can be printed (None = withheld, which is always printable)."""
    return score is None or SCORE_MIN <= score <= SCORE_MAX


def is_withheld(face: FaceResult) -> bool:
    """Likely minors (and faces without a score) get age only, everywhere: card, title, description."""
    return face.attractiveness is None


def headline(face: FaceResult | None) -> str:
    """og:title — what friends see in the link preview; minors get their age only."""
    if face is None:
        return f"See my result on {BRAND}"
    age, _, _ = whole_years(face)
    if is_withheld(face) or not face.attractiveness_word:
        return f"I look {age} on {BRAND}"
    return f"I look {age} — and I'm '{face.attractiveness_word}' on {BRAND}"


def description(face: FaceResult | None) -> str:
    """og:description — one sentence of result, one of invitation."""
    invite = "How old do you look? Try it yourself: one photo, a few seconds."
    if face is None:
        return invite
    age, low, high = whole_years(face)
    if is_withheld(face) or face.attractiveness is None:
        return f"{BRAND} guessed my age: {age} ({low}–{high}). {invite}"
    return f"{BRAND} guessed my age: {age} ({low}–{high}), hotness {face.attractiveness:.1f}/10. {invite}"


def image_alt(face: FaceResult | None) -> str:
    """og:image:alt and the page's <img alt>: the card's content in words, for screen readers."""
    if face is None:
        return f"{BRAND} result card"
    age, low, high = whole_years(face)
    if is_withheld(face) or face.attractiveness is None:
        return f"{BRAND} result card: age guess {age} ({low}–{high})"
    word = f", '{face.attractiveness_word}'" if face.attractiveness_word else ""
    return f"{BRAND} result card: age guess {age} ({low}–{high}), hotness score {face.attractiveness:.1f}/10{word}"

