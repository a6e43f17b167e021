"""Training-time augmentation of face crops: mirror, small shift / scale / rotation jitter, colour jitter.

Why these and this small: DEX augmented with the same families; the members' crops are aligned from landmarks, so
large geometric changes would teach the network crops it never sees at inference, while small ones make it robust to
the detector's landmark noise (a few pixels, ~7 px at the mouth on UTKFace's tight crops).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance

FLIP_PROBABILITY = 0.5
MAX_SHIFT = 0.05  # of the crop side
MAX_SCALE = 0.08  # ± relative zoom
MAX_ROTATION_DEG = 8.0
MAX_COLOUR = 0.2  # ± brightness, contrast and saturation factors


def augment_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly jittered copy of an HxWx3 uint8 crop (same size; borders replicated by PIL's affine fill)."""
    size = crop.shape[0]
    image = Image.fromarray(crop)
    if rng.random() < FLIP_PROBABILITY:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = 1.0 + rng.uniform(-MAX_SCALE, MAX_SCALE)
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * size
    centre = size / 2.0
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    # output→input map about the centre: PIL's AFFINE takes the inverse transform's coefficients
    coeffs = (cos, -sin, centre - cos * centre + sin * centre + shift[0],
              sin, cos, centre - sin * centre - cos * centre + shift[1])
    edge = tuple(int(v) for v in np.asarray(crop).reshape(-1, 3).mean(0))  # mean colour instead of black corners
    image = image.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=edge)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhancer(image).enhance(1.0 + rng.uniform(-MAX_COLOUR, MAX_COLOUR))
    return np.asarray(image)
