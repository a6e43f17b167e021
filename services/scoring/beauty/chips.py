"""Data-set images → aligned 256×256 chips (the face service's contract), for training and evaluation.

Production chips come from the face service. Here the same detector and the same Umeyama alignment onto
``libs.common.chips.CHIP_TEMPLATE`` are run over a folder of labelled images. MEBeauty images are tight 224×224
crops: the detector's own padded second pass finds most of them; a face it still misses gets a fixed-geometry chip
from the median landmarks (relative to the image size) of the faces found in the same data set, so no image is
silently dropped (dropping would bias the test figures towards easy faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.scoring.chipsource import chip_from_landmarks

DETECT_BATCH = 16  # images per detector call: same-size images share one canvas


@dataclass(frozen=True)
class ImageLandmarks:
    """Five landmarks per image in image pixels, and whether each came from the detector (False: fixed geometry)."""

    landmarks: np.ndarray  # [N, 5, 2]
    detected: np.ndarray  # [N] bool


def load_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def detect_landmarks(paths: Sequence[Path], detector: object, progress: bool = False) -> ImageLandmarks:
    """Largest face's landmarks per image; images without a face get the data set's median relative landmarks."""
    from tqdm import tqdm

    found: list[np.ndarray | None] = []
    sizes: list[tuple[int, int]] = []
    for start in tqdm(range(0, len(paths), DETECT_BATCH), desc="detect", unit="batch", disable=not progress):
        images = [load_rgb(p) for p in paths[start : start + DETECT_BATCH]]
        sizes.extend((im.shape[1], im.shape[0]) for im in images)
        for faces in detector.detect_batch(images):  # type: ignore[attr-defined]
            found.append(faces[0].landmarks_array() if faces else None)
    relative = [lm / np.array(size) for lm, size in zip(found, sizes, strict=True) if lm is not None]
    if not relative:
        raise RuntimeError("no face detected in any image: cannot derive a fixed fallback geometry")
    median = np.median(np.stack(relative), axis=0)
    landmarks = np.stack([lm if lm is not None else median * np.array(size) for lm, size in zip(found, sizes,
                                                                                                 strict=True)])
    return ImageLandmarks(landmarks.astype(np.float32), np.array([lm is not None for lm in found]))


def chips_for(paths: Sequence[Path], landmarks: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Aligned chips and chip landmarks for each image, given its five landmarks in image pixels."""
    chips, chip_landmarks = [], []
    for path, lm in zip(paths, landmarks, strict=True):
        chip, clm = chip_from_landmarks(load_rgb(path), lm)
        chips.append(chip)
        chip_landmarks.append(clm)
    return chips, chip_landmarks
