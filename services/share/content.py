"""What a result card says: the input (``CardData``) and every text line and pill, fitted to a format's slots.

Kept apart from drawing (``cards``) so layout can be tested (text boxes, contrast) without decoding PNGs, and so the
wording for minors lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFont

from services.share import palette
from services.share.fonts import Weight, get_font
from services.share.layout import CardFormat, Slot, format_spec
from services.share.textfit import fit_text, size_for_height

BRAND = "Howhot"
SCORE_WORDS = ("Hmm", "OK", "Nice", "Hot", "Stunning", "Godlike")
ScoreWord = Literal["Hmm", "OK", "Nice", "Hot", "Stunning", "Godlike"]
Gender = Literal["female", "male"]
SCORE_MIN, SCORE_MAX = 1.0, 10.0

GENDER_LABELS: dict[str, str] = {"female": "Female", "male": "Male"}
KICKER_SCORE = "HOTNESS SCORE"
KICKER_AGE = "AGE GUESS"
SCORE_SUFFIX = "/10"
AGE_SUFFIX = "yrs"
MINOR_LINE = "Age only, scores are 18+"  # friendly, and says why there is no number
CTA_SCORE = "What's your score?"
CTA_AGE = "How old do you look?"
URL_SCHEMES = ("https://", "http://")

SUFFIX_SIZE_RATIO = 0.3  # "/10" next to the big number
SUFFIX_GAP_RATIO = 0.03  # space between number and suffix, × number size
BADGE_PADDING_RATIO = 0.45  # horizontal padding inside the word pill, × pill height
BADGE_TEXT_RATIO = 0.58  # word size relative to the pill height
LINK_PADDING_RATIO = 0.5  # horizontal padding inside the link pill, × pill height


@dataclass(frozen=True)
class CardData:
    """What a card shows for one shared face; ``score=None`` means withheld (a likely minor): age only."""

    face: np.ndarray | Image.Image | None  # the aligned 256×256 RGB chip; None: photo not kept, a silhouette
    age: int
    age_low: int
    age_high: int
    gender: Gender
    score: float | None  # 1–10, or None when withheld
    word: ScoreWord | str | None  # Hmm … Godlike; ignored when score is None
    share_url: str  # e.g. howhot.io/s/AbC…; a scheme is dropped on the card
    brand: str = BRAND


@dataclass(frozen=True)
class PlacedText:
    """One line of text as it will be drawn; ``bbox`` is its ink box in canvas pixels (for layout tests)."""

    role: str
    text: str
    font: ImageFont.FreeTypeFont
    xy: tuple[float, float]
    anchor: str
    fill: palette.RGB
    backdrop: palette.RGB | None = None  # the pill colour behind it, None = the gradient

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Ink bounding box (x0, y0, x1, y1) of the text on the canvas."""
        x0, y0, x1, y1 = self.font.getbbox(self.text, anchor=self.anchor)
        return (round(self.xy[0] + x0), round(self.xy[1] + y0), round(self.xy[0] + x1), round(self.xy[1] + y1))


@dataclass(frozen=True)
class Pill:
    """A rounded, filled box drawn under a PlacedText (the score-word badge)."""

    box: tuple[int, int, int, int]
    fill: palette.RGB


def validate_card(card: CardData) -> None:
    """Reject values that would print a wrong card (a score of 11, an age range that excludes the age)."""
    if card.score is not None and not SCORE_MIN <= card.score <= SCORE_MAX:
        raise ValueError(f"score must be in [{SCORE_MIN}, {SCORE_MAX}] or None, got {card.score}")
    if not card.age_low <= card.age <= card.age_high:
        raise ValueError(f"age {card.age} is outside its range {card.age_low}–{card.age_high}")


def plan_card(card: CardData, fmt: CardFormat) -> tuple[list[PlacedText], list[Pill]]:
    """Every result-dependent text line and pill of the card, fitted to its slot (no drawing)."""
    spec = format_spec(fmt)
    minor = card.score is None
    texts: list[PlacedText] = []
    pills: list[Pill] = []
    kicker = KICKER_AGE if minor else KICKER_SCORE
    texts.append(_line("kicker", kicker, spec.kicker, Weight.BOLD, palette.KICKER))
    number = str(card.age) if minor else f"{card.score:.1f}"
    texts.extend(_score_lines(number, AGE_SUFFIX if minor else SCORE_SUFFIX, spec.score))
    badge_text = MINOR_LINE if minor else (card.word or "").upper()
    word_colour = palette.WORD_COLOURS.get(card.word or "", palette.DEFAULT_WORD_COLOUR)
    badge_colour = palette.MINOR_PILL if minor else word_colour
    if badge_text:
        badge_item, pill = _badge(badge_text, spec.badge, badge_colour)
        texts.append(badge_item)
        pills.append(pill)
    gender = GENDER_LABELS.get(card.gender, card.gender.title())
    span = f"{card.age_low}–{card.age_high}"
    details = f"Range {span} · {gender}" if minor else f"Age {card.age} ({span}) · {gender}"
    texts.append(_line("details", details, spec.details, Weight.SEMIBOLD, palette.TEXT_SOFT))
    if spec.cta is not None:
        texts.append(_line("cta", CTA_AGE if minor else CTA_SCORE, spec.cta, Weight.BOLD, palette.KICKER))
    link_pad = round(spec.link.height * LINK_PADDING_RATIO)
    texts.append(_line("link", display_url(card.share_url), spec.link, Weight.BOLD, palette.TEXT, pad=link_pad))
    return texts, pills


def display_url(url: str) -> str:
    """The URL as printed on the card: no scheme, no trailing slash (shorter, and it is what people type)."""
    for scheme in URL_SCHEMES:
        if url.startswith(scheme):
            url = url[len(scheme) :]
            break
    return url.rstrip("/")


def _line(role: str, text: str, slot: Slot, weight: Weight, fill: palette.RGB, pad: int = 0) -> PlacedText:
    """``text`` fitted into ``slot`` (minus ``pad`` on each side), vertically centred."""
    cap = min(slot.max_size, size_for_height(slot.height))
    fitted = fit_text(text, weight, slot.width - 2 * pad, cap, slot.min_size)
    cy = (slot.box[1] + slot.box[3]) / 2
    if slot.align == "left":
        return PlacedText(role, fitted.text, fitted.font, (slot.box[0] + pad, cy), "lm", fill)
    return PlacedText(role, fitted.text, fitted.font, ((slot.box[0] + slot.box[2]) / 2, cy), "mm", fill)


def _score_lines(number: str, suffix: str, slot: Slot) -> list[PlacedText]:
    """The big number and its small suffix on one baseline, shrunk together until both fit the slot."""
    size = slot.max_size
    while True:
        big = get_font(Weight.BLACK, size)
        small = get_font(Weight.BOLD, max(1, round(size * SUFFIX_SIZE_RATIO)))
        gap = size * SUFFIX_GAP_RATIO
        width = big.getlength(number) + gap + small.getlength(suffix)
        top, bottom = big.getbbox(number, anchor="ls")[1::2]
        if (width <= slot.width and bottom - top <= slot.height) or size <= slot.min_size:
            break
        size -= max(1, round(size * (1 - slot.width / width))) if width > slot.width else 1
    baseline = (slot.box[1] + slot.box[3]) / 2 - (top + bottom) / 2
    x = slot.box[0] if slot.align == "left" else (slot.box[0] + slot.box[2] - width) / 2
    return [
        PlacedText("score", number, big, (x, baseline), "ls", palette.TEXT),
        PlacedText("suffix", suffix, small, (x + big.getlength(number) + gap, baseline), "ls", palette.TEXT_SOFT),
    ]


def _badge(text: str, slot: Slot, colour: palette.RGB) -> tuple[PlacedText, Pill]:
    """The word pill: dark text on a bright pill sized to the text, centred in its slot."""
    pad = round(slot.height * BADGE_PADDING_RATIO)
    cap = min(slot.max_size, round(slot.height * BADGE_TEXT_RATIO))
    fitted = fit_text(text, Weight.EXTRABOLD, slot.width - 2 * pad, cap, slot.min_size)
    cx, cy = (slot.box[0] + slot.box[2]) / 2, (slot.box[1] + slot.box[3]) / 2
    half = round(fitted.width / 2) + pad
    pill = Pill((round(cx) - half, slot.box[1], round(cx) + half, slot.box[3]), colour)
    return PlacedText("badge", fitted.text, fitted.font, (cx, cy), "mm", palette.INK, backdrop=colour), pill
