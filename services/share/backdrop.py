"""The static layer of each card format: gradient, glows, the face ring, the brand wordmark and the link pill.

None of these depend on the result, so they are drawn once per (format, brand) on first use and copied per render;
this is what keeps a card near 10 ms. Nothing is built at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from services.share import palette
from services.share.fonts import Weight
from services.share.layout import RING_GAP, FormatSpec, Slot, format_spec
from services.share.textfit import fit_text, size_for_height

SUPERSAMPLE = 4  # shapes are drawn 4× larger and box-reduced: smooth edges without Pillow's (absent) shape AA
FACE_GLOW_ALPHA = 0.5
FACE_GLOW_SIGMA = 0.42  # × face diameter
CORNER_GLOW_ALPHA = 0.3
CORNER_GLOW_SIGMA = 0.32  # × the canvas' longer side
BRAND_MARK_RATIO = 0.62  # logo dot diameter relative to the brand font size
BRAND_MARK_GAP_RATIO = 0.3  # space between dot and word, relative to the font size
LINK_PILL_RADIUS_RATIO = 0.5  # fully rounded ends
SHADOW_ALPHA = 0.45  # drop shadow under the ring: lifts the face off the gradient
SHADOW_OFFSET_RATIO = 0.035  # × face diameter, straight down (light from above)
SHADOW_BLUR_RATIO = 0.05  # × face diameter
SHADOW_SCALE = 4  # the shadow is blurred at 1/4 resolution: a blur is blurry anyway, and 16× cheaper
STATIC_CACHE_SIZE = 8  # 3 formats × a couple of brands at most


def aa_mask(size: tuple[int, int], draw: Callable[[ImageDraw.ImageDraw, int], None]) -> Image.Image:
    """An anti-aliased L mask of ``size``: ``draw(d, scale)`` paints white shapes at SUPERSAMPLE× scale."""
    big = Image.new("L", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), 0)
    draw(ImageDraw.Draw(big), SUPERSAMPLE)
    return big.reduce(SUPERSAMPLE)


@lru_cache(maxsize=len(("og", "square", "story")))
def circle_mask(diameter: int) -> Image.Image:
    """The anti-aliased disc the face chip is pasted through."""
    return aa_mask((diameter, diameter), lambda d, s: d.ellipse((0, 0, diameter * s - 1, diameter * s - 1), fill=255))


def _linear_gradient(size: tuple[int, int], stops: tuple[palette.RGB, ...]) -> np.ndarray:
    """H×W×3 float image that runs through ``stops`` along the top-left → bottom-right diagonal."""
    w, h = size
    xs = np.arange(w, dtype=np.float32)[None, :] * w
    ys = np.arange(h, dtype=np.float32)[:, None] * h
    t = (xs + ys) / float(w * w + h * h)  # projection onto the diagonal, 0 at top-left, 1 at bottom-right
    positions = np.linspace(0.0, 1.0, len(stops))
    colours = np.asarray(stops, dtype=np.float32)
    return np.stack([np.interp(t, positions, colours[:, c]) for c in range(3)], axis=-1)


def _glow(img: np.ndarray, center: tuple[float, float], sigma: float, colour: palette.RGB, alpha: float) -> None:
    """Blend a soft Gaussian blob of ``colour`` into ``img`` in place (separable, so cheap even at 1080×1920)."""
    h, w = img.shape[:2]
    gx = np.exp(-(((np.arange(w, dtype=np.float32) - center[0]) / sigma) ** 2) / 2)
    gy = np.exp(-(((np.arange(h, dtype=np.float32) - center[1]) / sigma) ** 2) / 2)
    weight = (gy[:, None] * gx[None, :] * alpha)[..., None]
    img *= 1 - weight
    img += weight * np.asarray(colour, dtype=np.float32)


def _paste_shadow(canvas: Image.Image, spec: FormatSpec) -> None:
    """A soft dark disc under the ring, offset downwards, so the face reads as a sticker on top of the card."""
    outer = spec.ring_outer_radius
    blur = spec.face_diameter * SHADOW_BLUR_RATIO
    margin = round(3 * blur)
    side = 2 * (outer + margin)
    small = Image.new("L", (side // SHADOW_SCALE, side // SHADOW_SCALE), 0)
    m = margin / SHADOW_SCALE
    ImageDraw.Draw(small).ellipse((m, m, small.width - m, small.height - m), fill=round(255 * SHADOW_ALPHA))
    mask = small.filter(ImageFilter.GaussianBlur(blur / SHADOW_SCALE)).resize((side, side), Image.Resampling.BILINEAR)
    cx, cy = spec.face_center
    dy = round(spec.face_diameter * SHADOW_OFFSET_RATIO)
    canvas.paste((0, 0, 0), (cx - side // 2, cy - side // 2 + dy), mask)


def _paste_ring(canvas: Image.Image, spec: FormatSpec) -> None:
    """The gold → pink → orange ring around the face: the one bright, brand-coloured shape on the card."""
    outer = spec.ring_outer_radius
    inner = spec.face_diameter // 2 + RING_GAP
    side = 2 * outer
    colours = Image.fromarray(_linear_gradient((side, side), palette.RING_STOPS).astype(np.uint8), "RGB")

    def annulus(d: ImageDraw.ImageDraw, s: int) -> None:
        d.ellipse((0, 0, side * s - 1, side * s - 1), fill=255)
        off = (outer - inner) * s
        d.ellipse((off, off, side * s - 1 - off, side * s - 1 - off), fill=0)

    cx, cy = spec.face_center
    canvas.paste(colours, (cx - outer, cy - outer), aa_mask((side, side), annulus))


def _paste_brand(canvas: Image.Image, slot: Slot, brand: str) -> None:
    """Logo dot (ring colours) + brand word in white Black weight, left- or centre-aligned in its slot."""
    size_cap = min(slot.max_size, size_for_height(slot.height))
    mark = round(size_cap * BRAND_MARK_RATIO)
    gap = round(size_cap * BRAND_MARK_GAP_RATIO)
    fitted = fit_text(brand, Weight.BLACK, slot.width - mark - gap, size_cap, slot.min_size)
    total = mark + gap + fitted.width
    x0 = slot.box[0] if slot.align == "left" else round((slot.box[0] + slot.box[2] - total) / 2)
    cy = (slot.box[1] + slot.box[3]) // 2
    dot = Image.fromarray(_linear_gradient((mark, mark), palette.RING_STOPS).astype(np.uint8), "RGB")
    canvas.paste(dot, (x0, cy - mark // 2), circle_mask(mark))
    ImageDraw.Draw(canvas).text((x0 + mark + gap, cy), fitted.text, font=fitted.font, fill=palette.TEXT, anchor="lm")


def _paste_link_pill(canvas: Image.Image, slot: Slot) -> None:
    """A dark translucent pill under the share link, so the URL reads on any part of the gradient."""
    x0, y0, x1, y1 = slot.box
    region = canvas.crop(slot.box)
    dark = Image.blend(region, Image.new("RGB", region.size, palette.URL_PILL), palette.URL_PILL_ALPHA)
    radius = slot.height * LINK_PILL_RADIUS_RATIO

    def pill(d: ImageDraw.ImageDraw, s: int) -> None:
        d.rounded_rectangle((0, 0, (x1 - x0) * s - 1, (y1 - y0) * s - 1), radius=radius * s, fill=255)

    canvas.paste(dark, (x0, y0), aa_mask(region.size, pill))


@lru_cache(maxsize=STATIC_CACHE_SIZE)
def static_layer(fmt: str, brand: str) -> Image.Image:
    """Everything on a card of ``fmt`` that does not depend on the result. Callers must ``.copy()`` it."""
    spec = format_spec(fmt)
    w, h = spec.size
    pixels = _linear_gradient(spec.size, palette.BACKGROUND_STOPS)
    _glow(pixels, spec.face_center, spec.face_diameter * FACE_GLOW_SIGMA, palette.GLOW_PINK, FACE_GLOW_ALPHA)
    _glow(pixels, (w, h), max(w, h) * CORNER_GLOW_SIGMA, palette.GLOW_ORANGE, CORNER_GLOW_ALPHA)
    canvas = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    _paste_shadow(canvas, spec)
    _paste_ring(canvas, spec)
    _paste_brand(canvas, spec.brand, brand)
    _paste_link_pill(canvas, spec.link)
    return canvas
