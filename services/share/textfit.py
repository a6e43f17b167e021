"""Fit a line of text into a box: shrink the font, and only at the minimum size cut the text with an ellipsis.

Share URLs and words come from data, so their width is unknown; a card whose link runs off the edge is a broken
card. Width scales linearly with font size, so one proportional guess plus a short downward search is enough.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import ImageFont

from services.share.fonts import Weight, get_font

ELLIPSIS = "…"
LINE_HEIGHT_RATIO = 1.25  # a font of size s needs ~1.25·s of height for Poppins' ascender + descender


@dataclass(frozen=True)
class FittedText:
    """A line of text and the font that makes it fit its width (``text`` may end in an ellipsis)."""

    text: str
    font: ImageFont.FreeTypeFont
    size: int
    width: float


def fit_text(text: str, weight: Weight, max_width: float, max_size: int, min_size: int) -> FittedText:
    """The largest size in [min_size, max_size] at which ``text`` is at most ``max_width`` wide.

    Below ``min_size`` the text stays at ``min_size`` and loses characters from the end (plus "…") instead, because
    an unreadably small link is as useless as a clipped one.
    """
    size = max_size
    width = get_font(weight, size).getlength(text)
    if width > max_width:
        size = max(min_size, int(max_size * max_width / max(width, 1.0)))
        width = get_font(weight, size).getlength(text)
        while width > max_width and size > min_size:
            size -= 1
            width = get_font(weight, size).getlength(text)
    font = get_font(weight, size)
    if width <= max_width:
        return FittedText(text, font, size, width)
    return _ellipsize(text, font, size, max_width)


def _ellipsize(text: str, font: ImageFont.FreeTypeFont, size: int, max_width: float) -> FittedText:
    """Cut ``text`` to the longest prefix that fits together with an ellipsis (binary search on the length)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if font.getlength(text[:mid] + ELLIPSIS) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    cut = text[:lo].rstrip() + ELLIPSIS
    return FittedText(cut, font, size, font.getlength(cut))


def size_for_height(height: int) -> int:
    """The largest font size whose line box fits ``height`` pixels."""
    return int(height / LINE_HEIGHT_RATIO)
