"""Bring any decoded image array to the detector's input form: 8-bit RGB, HxWx3, C-contiguous.

Uploads arrive already EXIF-rotated (the upload service normalizes orientation before storing, so the face service
never reads EXIF); what still varies is the pixel format: grayscale (FG-NET has 175 of them), gray+alpha, RGBA PNGs,
16-bit PNG/TIFF and float arrays from other libraries. Converting here keeps the detector and alignment simple.
"""

from __future__ import annotations

import numpy as np

UINT16_TO_UINT8 = 257.0  # 65535 / 255: maps the full 16-bit range onto 0..255
ALPHA_BACKGROUND = 255.0  # transparent pixels are shown on white, as a browser would


def _to_float_255(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if image.dtype == np.bool_:
        return image.astype(np.float32) * 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / UINT16_TO_UINT8
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32))
        return finite * 255.0 if finite.size and finite.max() <= 1.0 else finite
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32)
    raise TypeError(f"unsupported image dtype {image.dtype}")


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Return an HxWx3 uint8 RGB copy of ``image`` (HxW, HxWx1, HxWx2 gray+alpha, HxWx3 or HxWx4 RGBA).

    Float images in 0..1 are scaled up, 16-bit images scaled down, alpha is composited over white.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an HxW or HxWxC (C in 1-4) image, got shape {image.shape}")
    if image.dtype == np.uint8 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    pixels = _to_float_255(image)
    channels = pixels.shape[2]
    if channels in (2, 4):
        alpha = pixels[:, :, -1:] / 255.0
        pixels = pixels[:, :, :-1] * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
