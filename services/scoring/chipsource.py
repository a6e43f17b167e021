"""Chips for calibration and evaluation when no face detector is in the loop.

The face service (RetinaFace + alignment) produces the chips in production. For fitting the ensemble calibration on
labelled sets of *already aligned and cropped* faces (UTKFace's 200×200 crops) there is nothing to detect: each crop is
warped onto the chip contract with a fixed landmark estimate and edge replication re-creates the margin that tight
crops lack (PEERS.md lesson 1; lesson 3: detectors miss tight crops anyway).
"""

from __future__ import annotations

import numpy as np

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.scoring.crops import PIXEL_CENTRE, similarity_transform, warp_affine

# Five landmarks (ArcFace order) of UTKFace's aligned 200×200 crops, read off the mean of 600 crops (eye centres,
# nose tip, mouth corners). Individual faces deviate by a few pixels; the members only need the face box scale/centre.
UTKFACE_LANDMARKS_200 = np.array([[57.0, 53.0], [143.0, 53.0], [100.0, 103.0], [70.0, 135.0], [130.0, 135.0]])
UTKFACE_SIZE = 200


def chip_from_landmarks(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp an RGB image onto the chip contract given its five landmarks: (chip, landmarks in chip pixels)."""
    matrix = similarity_transform(
        np.asarray(landmarks, dtype=np.float64) + PIXEL_CENTRE, CHIP_TEMPLATE.astype(np.float64) + PIXEL_CENTRE
    )
    chip = warp_affine(image, matrix, CHIP_SIZE, antialias=True)
    chip_landmarks = np.asarray(landmarks, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]
    chip_landmarks += (matrix[:, :2] @ np.full(2, PIXEL_CENTRE)) - PIXEL_CENTRE
    return chip, chip_landmarks.astype(np.float32)


def chip_from_utkface(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A chip from one UTKFace aligned crop (any size; the landmark estimate is scaled to it)."""
    scale = np.array([image.shape[1], image.shape[0]]) / UTKFACE_SIZE
    return chip_from_landmarks(image, UTKFACE_LANDMARKS_200 * scale)
