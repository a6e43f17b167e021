"""Where things go on each card format: hand-placed boxes, one spec per format.

Fixed boxes (rather than a flow layout) keep every render of a format pixel-identical in structure, let the static
parts (gradient, ring, brand, link pill) be drawn once and cached, and make "text never leaves its box" checkable.
Text that is too wide for its box is shrunk (see ``textfit``), never allowed to overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CardFormat = Literal["og", "square", "story"]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in canvas pixels
Align = Literal["left", "center"]


@dataclass(frozen=True)
class Slot:
    """A text box: the largest font size it may use, how it aligns, and the smallest size before ellipsising."""

    box: Box
    max_size: int
    min_size: int
    align: Align = "center"

    @property
    def width(self) -> int:
        """Usable width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        """Usable height in pixels."""
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class FormatSpec:
    """The geometry of one card format; ``face_center``/``face_diameter`` place the circular face crop."""

    size: tuple[int, int]
    face_center: tuple[int, int]
    face_diameter: int
    brand: Slot
    kicker: Slot  # small label above the big number ("HOTNESS SCORE" / "AGE GUESS")
    score: Slot  # the big number (with a small "/10" suffix)
    badge: Slot  # the score word pill, sitting on the bottom of the face ring
    details: Slot  # "Age 27 (24–30) · Female"
    cta: Slot | None  # "What's your score?" — only where there is room
    link: Slot  # the short share URL, on a dark pill

    @property
    def ring_outer_radius(self) -> int:
        """Radius of the outside of the gradient ring around the face."""
        return self.face_diameter // 2 + RING_GAP + RING_WIDTH


RING_GAP = 8  # transparent gap between face and ring: makes the ring read as a frame, not a stain
RING_WIDTH = 14  # thick enough to survive a 300-px-wide thumbnail
BADGE_HEIGHT_RATIO = 0.2  # badge pill height relative to the face diameter

OG = FormatSpec(  # 1200×630: Open Graph / X summary_large_image; face left, numbers right
    size=(1200, 630),
    face_center=(300, 300),
    face_diameter=400,
    brand=Slot((600, 44, 1140, 112), max_size=52, min_size=28, align="left"),
    kicker=Slot((600, 150, 1140, 192), max_size=30, min_size=20, align="left"),
    score=Slot((600, 186, 1140, 386), max_size=200, min_size=80, align="left"),
    badge=Slot((80, 482, 520, 562), max_size=46, min_size=22),
    details=Slot((600, 400, 1140, 446), max_size=34, min_size=20, align="left"),
    cta=None,
    link=Slot((600, 500, 1140, 572), max_size=30, min_size=16),
)

SQUARE = FormatSpec(  # 1080×1080: feed posts
    size=(1080, 1080),
    face_center=(540, 360),
    face_diameter=400,
    brand=Slot((90, 40, 990, 118), max_size=56, min_size=28),
    kicker=Slot((90, 642, 990, 684), max_size=30, min_size=20),
    score=Slot((90, 672, 990, 856), max_size=180, min_size=80),
    badge=Slot((340, 542, 740, 622), max_size=46, min_size=22),
    details=Slot((90, 862, 990, 910), max_size=36, min_size=20),
    cta=None,
    link=Slot((190, 948, 890, 1028), max_size=34, min_size=16),
)

STORY = FormatSpec(  # 1080×1920: stories; keeps ~250 px clear at the top and ~270 px at the bottom for app chrome
    size=(1080, 1920),
    face_center=(540, 720),
    face_diameter=560,
    brand=Slot((90, 250, 990, 340), max_size=72, min_size=36),
    kicker=Slot((90, 1136, 990, 1186), max_size=40, min_size=24),
    score=Slot((90, 1182, 990, 1416), max_size=240, min_size=100),
    badge=Slot((300, 962, 780, 1082), max_size=60, min_size=28),
    details=Slot((90, 1422, 990, 1478), max_size=42, min_size=24),
    cta=Slot((90, 1510, 990, 1558), max_size=38, min_size=24),
    link=Slot((140, 1568, 940, 1650), max_size=38, min_size=18),
)

FORMATS: dict[str, FormatSpec] = {"og": OG, "square": SQUARE, "story": STORY}


def format_spec(fmt: str) -> FormatSpec:
    """The spec of ``fmt``; a clear error for an unknown format instead of a KeyError deep in rendering."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown card format {fmt!r}; expected one of {sorted(FORMATS)}") from None
