"""Result cards: the PNG people post (1200×630 link preview, 1080×1080 feed, 1080×1920 story).

``render_card`` is pure and deterministic: the same ``CardData`` and format always give the same bytes, so a re-render
after a retry overwrites the blob with identical content, and the blob key (photo id + ``TEMPLATE_VERSION``) is a
safe cache key. Bump ``TEMPLATE_VERSION`` whenever the look changes, so old cached cards are not served as new ones.
What the card says is planned in ``content``; this module draws it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from libs.common import keys
from services.share import palette
from services.share.backdrop import aa_mask, circle_mask, static_layer
from services.share.content import BRAND, SCORE_WORDS, CardData, Pill, PlacedText, plan_card, validate_card
from services.share.fonts import Weight, font_bytes
from services.share.layout import FORMATS, CardFormat, FormatSpec, format_spec
from services.share.png import encode_png

__all__ = [
    "BRAND",
    "SCORE_WORDS",
    "TEMPLATE_VERSION",
    "CardData",
    "Pill",
    "PlacedText",
    "card_key",
    "plan_card",
    "render_card",
    "silhouette",
    "warm_caches",
]

TEMPLATE_VERSION = "v1"
FACE_CROP_FRACTION = 0.8  # of the 256-px chip: the face frame (central 1/1.8) then fills ~70 % of the circle
SILHOUETTE_HEAD_RATIO = 0.17  # head radius, × the face circle's diameter
SILHOUETTE_HEAD_Y_RATIO = 0.4  # head centre, from the circle's top
SILHOUETTE_SHOULDERS_RATIO = 0.62  # shoulders' width; the circle cuts them off below
PILL_MASK_CACHE = 64  # distinct pill sizes: six words × three formats, plus a few fitted long words


def card_key(photo_id: str, fmt: CardFormat) -> str:
    """The blob key of a card: photo id + format + template version (so a new template never hits old cache)."""
    return keys.card(photo_id, fmt, TEMPLATE_VERSION)


def warm_caches(brand: str = BRAND) -> None:
    """Build every format's static layer and the fonts now (~0.3–0.7 s), e.g. at service start-up, so that the
    first shared card is not the slow one. Optional: everything is also built lazily on first use."""
    for fmt in FORMATS:
        static_layer(fmt, brand)
        circle_mask(format_spec(fmt).face_diameter)
    for weight in Weight:
        font_bytes(weight)


def render_card(card: CardData, fmt: CardFormat) -> bytes:
    """Render ``card`` as a PNG in ``fmt`` ('og' 1200×630, 'square' 1080×1080, 'story' 1080×1920)."""
    spec = format_spec(fmt)
    validate_card(card)
    canvas = static_layer(fmt, card.brand).copy()
    if card.face is None:
        canvas.paste(silhouette(spec.face_diameter), _face_origin(spec), circle_mask(spec.face_diameter))
    else:
        _paste_face(canvas, card.face, spec)
    texts, pills = plan_card(card, fmt)
    draw = ImageDraw.Draw(canvas)
    for pill in pills:
        x0, y0, x1, y1 = pill.box
        canvas.paste(pill.fill, pill.box, _pill_mask(x1 - x0, y1 - y0))
    for item in texts:
        draw.text(item.xy, item.text, font=item.font, fill=item.fill, anchor=item.anchor)
    return encode_png(canvas)


@lru_cache(maxsize=PILL_MASK_CACHE)
def _pill_mask(width: int, height: int) -> Image.Image:
    """Anti-aliased stadium shape; cached because the six score words give only a few distinct widths."""
    return aa_mask(
        (width, height), lambda d, s: d.rounded_rectangle((0, 0, width * s - 1, height * s - 1), height * s / 2, 255)
    )


def _paste_face(canvas: Image.Image, face: np.ndarray | Image.Image, spec: FormatSpec) -> None:
    """The centre of the face chip, scaled to the face circle and pasted through an anti-aliased disc."""
    chip = face if isinstance(face, Image.Image) else Image.fromarray(np.ascontiguousarray(face, dtype=np.uint8))
    chip = chip.convert("RGB")
    w, h = chip.size
    side = min(w, h) * FACE_CROP_FRACTION
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    d = spec.face_diameter
    scaled = chip.resize((d, d), Image.Resampling.BICUBIC, box=box)
    canvas.paste(scaled, _face_origin(spec), circle_mask(d))


def _face_origin(spec: FormatSpec) -> tuple[int, int]:
    cx, cy = spec.face_center
    return cx - spec.face_diameter // 2, cy - spec.face_diameter // 2


@lru_cache(maxsize=len(FORMATS))
def silhouette(diameter: int) -> Image.Image:
    """What the face circle shows when the owner chose not to keep their photo: an anonymous head and shoulders.

    The card outlives the photo (it is public wherever it was posted), so it must not carry the face either."""
    disc = Image.new("RGB", (diameter, diameter), palette.INK)
    head_r = SILHOUETTE_HEAD_RATIO * diameter
    cx, head_cy = diameter / 2, SILHOUETTE_HEAD_Y_RATIO * diameter
    shoulders_w = SILHOUETTE_SHOULDERS_RATIO * diameter
    top = head_cy + head_r * 1.25

    def bust(d: ImageDraw.ImageDraw, s: int) -> None:
        d.ellipse(((cx - head_r) * s, (head_cy - head_r) * s, (cx + head_r) * s, (head_cy + head_r) * s), fill=255)
        d.ellipse(((cx - shoulders_w / 2) * s, top * s, (cx + shoulders_w / 2) * s, (top + shoulders_w) * s), fill=255)

    disc.paste(palette.SILHOUETTE, (0, 0), aa_mask((diameter, diameter), bust))
    return disc
