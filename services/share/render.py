"""Rendering cards off the event loop, one at a time.

Rendering is CPU-bound (~0.1–0.3 s for three formats) and the renderer's font and backdrop caches are shared module
state, so renders are serialised: an asyncio lock queues callers on the event loop (waiting costs no thread, so blob
I/O, which also runs in the default thread pool, is never starved), and a thread lock inside the worker keeps the
promise even when a caller is cancelled while its render is still running in the thread.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from PIL import Image, UnidentifiedImageError

from libs.common.events import FaceResult
from services.share.cards import CardData, render_card, warm_caches
from services.share.featured import whole_years
from services.share.layout import CardFormat

CARD_FORMATS: tuple[CardFormat, ...] = ("og", "square", "story")
PNG_CONTENT_TYPE = "image/png"
MAX_CHIP_PIXELS = 1024 * 1024  # chips are 256×256; anything far larger is not a chip and would waste a render

_THREAD_LOCK = threading.Lock()
P = ParamSpec("P")
T = TypeVar("T")


class ChipUnreadable(ValueError):
    """The stored face chip is not a decodable image of sensible size: re-rendering will not help."""


@dataclass(frozen=True)
class RenderedCards:
    """PNG bytes per format and how long the render took (reported in card.rendered)."""

    pngs: dict[CardFormat, bytes]
    elapsed_ms: float


class CardRenderer:
    """Serialises card renders (and the cache warm-up) in worker threads; one instance per process."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.warmed = False

    async def warm_up(self) -> None:
        """Build fonts and static layers before the first card (under the same lock, so a render never races it)."""
        async with self._lock:
            await asyncio.to_thread(_locked, warm_caches)
        self.warmed = True

    async def render(
        self, chip_png: bytes | None, face: FaceResult, url: str, formats: tuple[CardFormat, ...] = CARD_FORMATS
    ) -> RenderedCards:
        """Render ``formats`` of the card for ``face`` (chip as stored PNG bytes; None: a silhouette instead)
        printing ``url``."""
        async with self._lock:
            return await asyncio.to_thread(_locked, _render_sync, chip_png, face, url, formats)


def _locked(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    with _THREAD_LOCK:
        return fn(*args, **kwargs)


def _render_sync(
    chip_png: bytes | None, face: FaceResult, url: str, formats: tuple[CardFormat, ...]
) -> RenderedCards:
    started = time.perf_counter()
    card = card_data(None if chip_png is None else decode_chip(chip_png), face, url)
    pngs = {fmt: render_card(card, fmt) for fmt in formats}
    return RenderedCards(pngs, (time.perf_counter() - started) * 1000)


def decode_chip(chip_png: bytes) -> Image.Image:
    """The stored chip as an RGB image; ChipUnreadable for anything that is not a small decodable image."""
    try:
        with Image.open(io.BytesIO(chip_png)) as image:
            if image.width * image.height > MAX_CHIP_PIXELS:
                raise ChipUnreadable(f"chip is {image.width}×{image.height}, not a face chip")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ChipUnreadable(f"chip is not a readable image: {exc}") from exc


def card_data(chip: Image.Image | None, face: FaceResult, url: str) -> CardData:
    """What the card prints for ``face``: whole-year ages; the score only when it was not withheld."""
    age, low, high = whole_years(face)
    withheld = face.attractiveness is None
    return CardData(
        face=chip,
        age=age,
        age_low=low,
        age_high=high,
        gender=face.gender,
        score=None if withheld else face.attractiveness,
        word=None if withheld else face.attractiveness_word,
        share_url=url,
    )
