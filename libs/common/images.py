"""Safe decoding of untrusted uploads, and the one normalized copy of a photo that Howhot stores.

An upload is hostile until proven otherwise: it is size-checked, its type sniffed from magic bytes (the filename and
the client's Content-Type are ignored), its declared dimensions checked before any pixel is allocated, then fully
decoded. What we keep is a fresh RGB JPEG, upright, in sRGB, at most ``max_side`` pixels long, with no metadata at
all (ARCHITECTURE.md, principle 8: no EXIF, GPS, ICC, XMP or comments ever reach storage). Because the ICC profile is
dropped, pixels in another RGB space (phones shoot Display P3) are converted to sRGB first, or they would be shown
and scored with dulled, shifted colours.

Decoding is CPU-bound and synchronous; async callers run it with ``asyncio.to_thread`` (Pillow releases the GIL).
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps

RejectionCode = Literal["empty", "too_large", "unsupported_type", "too_many_pixels", "undecodable"]

STORED_CONTENT_TYPE = "image/jpeg"  # every stored photo is a JPEG, whatever was uploaded
JPEG_QUALITY = 90  # visually lossless for photos; face models see no difference from the original
WHITE = (255, 255, 255)  # transparent areas become white, like a browser on a default page
RESIZE_REDUCING_GAP = 3.0  # Pillow reduces by an integer factor first: ~3x faster, indistinguishable from pure LANCZOS
DEFAULT_DECODE_MAX_PIXELS = 40_000_000  # same as UploadSettings.max_pixels; stored copies are far smaller
SIXTEEN_TO_EIGHT_BITS = 8  # 16-bit samples keep their top byte (Pillow's plain convert would clip at 255)
BYTES_PER_MB = 1024 * 1024
ICC_TRANSFORM_CACHE = 16  # distinct embedded profiles kept as built transforms (Display P3, Adobe RGB, a few more)

# Magic bytes -> our format name. Only these three are ever decoded: every other Pillow plugin is attack surface.
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RIFF_MAGIC, WEBP_MAGIC = b"RIFF", b"WEBP"  # WebP: "RIFF" <4-byte size> "WEBP"
PILLOW_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})  # 16-bit grayscale PNGs decode to these

# Everything Pillow may raise on a corrupt or truncated file (it is not consistent about which).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    TypeError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
)


class ImageRejected(Exception):
    """An upload we refuse: ``code`` for programs, ``message`` in plain words for the user, and the HTTP status."""

    def __init__(self, code: RejectionCode, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"ImageRejected(code={self.code!r}, http_status={self.http_status}, message={self.message!r})"


@dataclass(frozen=True)
class NormalizedImage:
    """The stored copy of an upload: ``jpeg`` is what goes to the blob store; ``image`` is the same pixels, decoded."""

    jpeg: bytes = field(repr=False)
    width: int
    height: int
    original_format: Literal["jpeg", "png", "webp"]
    image: Image.Image = field(repr=False, compare=False)  # RGB, before JPEG encoding (no need to decode again)

    def rgb(self) -> np.ndarray:
        """The pixels as an ``(height, width, 3)`` uint8 array."""
        return np.array(self.image)


def sniff_format(data: bytes) -> Literal["jpeg", "png", "webp"] | None:
    """The format named by the magic bytes, or None for anything we do not accept."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data[:4] == RIFF_MAGIC and data[8:12] == WEBP_MAGIC:
        return "webp"
    return None


def normalize_upload(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int) -> NormalizedImage:
    """Validate an uploaded photo and produce its stored copy, or raise :class:`ImageRejected`.

    Checks run cheapest first (length, magic bytes, header dimensions) so hostile input costs almost nothing.
    """
    if not data:
        raise ImageRejected("empty", "The upload is empty. Please choose a photo.", 400)
    if len(data) > max_bytes:
        limit = f"{max_bytes / BYTES_PER_MB:.0f} MB" if max_bytes >= BYTES_PER_MB else f"{max(1, max_bytes // 1024)} KB"
        raise ImageRejected("too_large", f"The file is too big. Please upload a photo under {limit}.", 413)
    fmt = _sniff_or_reject(data)
    image = _open_and_load(data, fmt, max_pixels=max_pixels, draft_side=max_side)
    image = _in_srgb(_fit_within(_to_rgb(_upright(image)), max_side), image.info.get("icc_profile"))
    image.info.clear()  # Pillow re-writes some info keys (comment, dpi) on save; the stored copy carries none
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, exif=b"")  # optimize=True costs ~4 ms a photo for ~3 % bytes
    return NormalizedImage(
        jpeg=buffer.getvalue(), width=image.width, height=image.height, original_format=fmt, image=image
    )


def decode_image_bytes(data: bytes, *, max_pixels: int = DEFAULT_DECODE_MAX_PIXELS) -> np.ndarray:
    """Decode a stored (or any accepted) image to an upright ``(height, width, 3)`` uint8 RGB array.

    For services reading the normalized copies; it applies the same guards, so a bad blob raises ImageRejected.
    """
    if not data:
        raise ImageRejected("empty", "The image is empty.", 400)
    image = _open_and_load(data, _sniff_or_reject(data), max_pixels=max_pixels, draft_side=None)
    return np.array(_in_srgb(_to_rgb(_upright(image)), image.info.get("icc_profile")))


def _sniff_or_reject(data: bytes) -> Literal["jpeg", "png", "webp"]:
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            "unsupported_type", "This file type is not supported. Please upload a JPEG, PNG or WebP photo.", 415
        )
    return fmt


def _too_many_pixels(max_pixels: int) -> ImageRejected:
    megapixels = max_pixels / 1_000_000
    message = f"The photo has too many pixels. Please upload one of at most {megapixels:.0f} megapixels."
    return ImageRejected("too_many_pixels", message, 413)


def _undecodable() -> ImageRejected:
    message = "The photo could not be read: it may be damaged or incomplete. Please try another file."
    return ImageRejected("undecodable", message, 415)


def _open_and_load(data: bytes, fmt: str, *, max_pixels: int, draft_side: int | None) -> Image.Image:
    """Open with only the sniffed format's plugin, check the header's size, then decode every pixel."""
    _arm_pillow_guards(max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMAT[fmt]])
        width, height = image.size  # from the header: nothing is decoded or allocated yet
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels)
        if draft_side is not None and fmt == "jpeg":
            image.draft("RGB", _draft_size(image.size, draft_side))  # libjpeg decodes at 1/2, 1/4, 1/8 scale
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except ImageRejected:
        raise
    except DECODE_ERRORS:
        raise _undecodable() from None
    return image


def _arm_pillow_guards(max_pixels: int) -> None:
    """Keep Pillow's process-wide guards on as a backstop behind our own header check.

    ``Image.MAX_IMAGE_PIXELS`` is global, so it is only ever raised to ``max_pixels`` (or re-armed if someone set it to
    None), never lowered: lowering it for one caller would make Pillow reject legitimate images for every other
    caller in the process. Our own ``width * height > max_pixels`` check is the one that enforces the caller's limit.
    """
    if Image.MAX_IMAGE_PIXELS is None or max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a library flipping this must not let half-decoded images through


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The smallest size the JPEG decoder may scale down to without dropping below the final stored size."""
    scale = min(1.0, max_side / max(size))
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


EXIF_ORIENTATION_TAG = 0x0112


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so phone photos are stored the way they were held."""
    try:
        if image.getexif().get(EXIF_ORIENTATION_TAG, 1) == 1:
            return image  # already upright: skip exif_transpose's full copy of the pixels
        return ImageOps.exif_transpose(image)
    except DECODE_ERRORS:  # EXIF is untrusted and optional: a broken block must not reject a photo that decodes fine
        return image


def _in_srgb(rgb: Image.Image, icc: object) -> Image.Image:
    """An RGB image whose pixels are in the space of ``icc`` (the decoded file's embedded profile, if any), in sRGB.

    Called after any downscale: the transform costs ~0.2 s on a 12 MP photo and ~15 ms on a stored-size one."""
    transform = _srgb_transform(icc) if isinstance(icc, bytes) and icc else None
    return rgb if transform is None else ImageCms.applyTransform(rgb, transform)


@lru_cache(maxsize=ICC_TRANSFORM_CACHE)
def _srgb_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """The embedded RGB profile → sRGB transform; None when there is nothing to convert (sRGB itself, a grey or CMYK
    profile, which Pillow's plain conversion already handled) or the profile is unreadable (the photo is kept as
    decoded: a broken profile must not reject a photo)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = (profile.profile.profile_description or "").lower()
        if profile.profile.xcolor_space.strip() != "RGB" or "srgb" in description:
            return None
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    except (ImageCms.PyCMSError, *DECODE_ERRORS):
        return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode to 8-bit RGB; transparency is composited onto white rather than dropped to black."""
    if image.mode in SIXTEEN_BIT_MODES:
        samples = np.clip(np.asarray(image).astype(np.int64), 0, np.iinfo(np.uint16).max)
        gray = (samples >> SIXTEEN_TO_EIGHT_BITS).astype(np.uint8)
        transparent = image.info.get("transparency")  # a 16-bit gray tRNS entry: one 16-bit sample value
        if isinstance(transparent, int):
            # The rebuilt image has no info, so carry the tRNS across as an alpha channel, matched on the full 16-bit
            # samples (as the PNG spec and browsers do) rather than on the 8-bit ones, where it would also blank the
            # 255 neighbouring values that share its top byte.
            alpha = np.where(samples == transparent, 0, 255).astype(np.uint8)
            image = Image.fromarray(np.dstack([gray, alpha]), "LA")
        else:
            image = Image.fromarray(gray)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """Downscale (never upscale) so the long side is at most ``max_side``."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=RESIZE_REDUCING_GAP)


def load_image_file(path: Path | str) -> np.ndarray:
    """A trusted local image file (datasets, CLI arguments) decoded as the upload service stores photos: EXIF-upright
    RGB, with the same conversion as ``decode_image_bytes`` (16-bit samples keep their top byte, transparency goes
    onto white, an embedded RGB profile is converted to sRGB), so training and evaluation see the pixels the service
    sees. Untrusted bytes go through ``normalize_upload`` instead.

    Unlike ``decode_image_bytes`` it trusts the file: any format Pillow reads is accepted, there is no pixel limit
    beyond Pillow's own, and Pillow's errors (``DECODE_ERRORS``) propagate rather than becoming ImageRejected."""
    with Image.open(path) as img:
        img.load()
        return np.asarray(_in_srgb(_to_rgb(_upright(img)), img.info.get("icc_profile")))
