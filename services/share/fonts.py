"""Card fonts, loaded from the ``fontpkg-poppins`` wheel (Poppins, SIL OFL 1.1) — never from the host system.

Why a package: the card must look identical on a laptop, in CI and in the container, and system fonts differ (or are
missing) between them. The wheel ships static TTFs per weight, which Pillow rasterises faster than variable fonts.
Fonts are opened lazily and cached per (weight, size), because ``ImageFont.truetype`` costs ~0.3 ms per call.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from importlib import resources
from io import BytesIO

from PIL import ImageFont

FONT_PACKAGE = "fontpkg_poppins"  # import name of the PyPI distribution ``fontpkg-poppins`` (OFL-1.1)
FONT_DISTRIBUTION = "fontpkg-poppins"
FONT_CACHE_SIZE = 256  # (weight, size) pairs; text fitting tries a handful of sizes per slot


class FontUnavailableError(RuntimeError):
    """The card font package is not installed, so no card can be rendered with the house typeface."""


class Weight(StrEnum):
    """The Poppins weights the cards use; the value is the file stem inside the package."""

    SEMIBOLD = "Poppins-SemiBold"
    BOLD = "Poppins-Bold"
    EXTRABOLD = "Poppins-ExtraBold"
    BLACK = "Poppins-Black"


@lru_cache(maxsize=len(Weight))
def font_bytes(weight: Weight) -> bytes:
    """The TTF of ``weight`` read once from the package (bytes, so it also works from a zipped install)."""
    try:
        root = resources.files(FONT_PACKAGE)
    except ModuleNotFoundError as err:
        raise FontUnavailableError(
            f"the card font package is missing: install {FONT_DISTRIBUTION!r} (pip install {FONT_DISTRIBUTION})"
        ) from err
    resource = root / "files" / f"{weight.value}.ttf"
    if not resource.is_file():
        raise FontUnavailableError(f"{FONT_DISTRIBUTION} does not ship {weight.value}.ttf; pin a version that does")
    return resource.read_bytes()


@lru_cache(maxsize=FONT_CACHE_SIZE)
def get_font(weight: Weight, size: int) -> ImageFont.FreeTypeFont:
    """A cached Pillow font of ``weight`` at ``size`` px (basic layout, not raqm: the same output on every host)."""
    return ImageFont.truetype(BytesIO(font_bytes(weight)), size, layout_engine=ImageFont.Layout.BASIC)
