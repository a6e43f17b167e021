"""Brand colours of the result card and the WCAG contrast maths used to check them.

The background is dark-to-saturated (indigo → purple → raspberry) so that white text keeps ≥ 4.5:1 everywhere, and
the bright accents (ring, badge pills) carry the "hot" feeling instead of the text.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

BACKGROUND_STOPS: tuple[RGB, ...] = ((27, 10, 60), (91, 19, 128), (194, 24, 91))  # indigo, purple, raspberry
GLOW_PINK: RGB = (255, 61, 139)  # soft blob behind the face; low alpha so text contrast survives
GLOW_ORANGE: RGB = (255, 138, 0)
RING_STOPS: tuple[RGB, ...] = ((255, 210, 63), (255, 61, 139), (255, 138, 0))  # gold → hot pink → orange
TEXT: RGB = (255, 255, 255)
TEXT_SOFT: RGB = (240, 222, 255)  # lavender for secondary text: still ≥ 4.5:1 on the darkest-lit background
KICKER: RGB = (255, 210, 63)  # gold label above the big number
INK: RGB = (27, 10, 60)  # dark text on bright pills
SILHOUETTE: RGB = (91, 19, 128)  # the anonymous bust on an INK disc, for photos the owner did not keep
URL_PILL: RGB = (0, 0, 0)
URL_PILL_ALPHA = 0.38  # darkens the gradient under the link, so the link reads at thumbnail size

WORD_COLOURS: dict[str, RGB] = {
    "Hmm": (165, 180, 252),  # lavender: gentle, not a red "fail"
    "OK": (125, 211, 252),  # sky
    "Nice": (110, 231, 183),  # mint
    "Hot": (255, 176, 32),  # orange
    "Stunning": (255, 93, 162),  # hot pink
    "Godlike": (255, 210, 63),  # gold
}
DEFAULT_WORD_COLOUR: RGB = (255, 210, 63)
MINOR_PILL: RGB = (110, 231, 183)  # mint pill for the friendly "18+ only" line

WCAG_AA_NORMAL = 4.5  # minimum contrast for body-size text
WCAG_AA_LARGE = 3.0  # minimum for large text (≥ 24 px regular / 18.7 px bold)
_SRGB_LINEAR_KNEE = 0.03928  # WCAG 2.x sRGB → linear threshold


def relative_luminance(colour: RGB) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (0 = black, 1 = white)."""

    def channel(value: int) -> float:
        c = value / 255.0
        return c / 12.92 if c <= _SRGB_LINEAR_KNEE else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: RGB, b: RGB) -> float:
    """WCAG contrast ratio between two colours, from 1 (same) to 21 (black on white)."""
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
