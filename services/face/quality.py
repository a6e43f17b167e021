"""Cheap face-quality signals from the chip and the landmarks: sharpness, head yaw and roll.

They let the scoring service (and the UI) refuse or flag faces that no age/attractiveness model reads well: blurred
faces and strong profiles. All are heuristics; thresholds belong to whoever consumes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from libs.common.chips import FACE_FRAME_BOX

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what PIL's "L" conversion uses
NOSE_DEPTH_RATIO = 1.0  # nose-tip depth in front of the eye plane / half the eye distance (rough anthropometry)


@dataclass(frozen=True)
class FaceQuality:
    """Sharpness (variance of the Laplacian, higher = sharper) and head pose estimates in degrees."""

    blur_variance: float
    yaw_deg: float  # > 0: nose towards image-right
    roll_deg: float  # > 0: eye line rotated clockwise in the image

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def laplacian_variance(chip: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grayscale face frame (the chip's centre, margins excluded)."""
    x0, y0, x1, y1 = (round(v) for v in FACE_FRAME_BOX)
    gray = chip[y0:y1, x0:x1, :3].astype(np.float64) @ LUMA_WEIGHTS if chip.ndim == 3 else chip[y0:y1, x0:x1]
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(lap.var())


def roll_degrees(landmarks: np.ndarray) -> float:
    """Angle of the eye line against the horizontal, in image coordinates."""
    left, right = np.asarray(landmarks, dtype=np.float64)[:2]
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Yaw from how far the nose tip sits off the eye–mouth midline, relative to the half eye distance.

    A frontal face has the nose on the midline; turning by θ moves it by depth·sin θ while the eyes close up by
    cos θ, so θ ≈ atan(offset / (half_eye · NOSE_DEPTH_RATIO)). Computed after removing roll. Good to ~10°.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    angle = np.radians(roll_degrees(points))
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    p = points @ rotation.T
    eye_mid, mouth_mid = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    half_eye = max(abs(p[1, 0] - p[0, 0]) / 2, 1e-6)
    # midline x at the nose's height, interpolated between the eye and mouth midpoints
    t = (p[2, 1] - eye_mid[1]) / (mouth_mid[1] - eye_mid[1]) if mouth_mid[1] != eye_mid[1] else 0.5
    midline_x = eye_mid[0] + t * (mouth_mid[0] - eye_mid[0])
    return float(np.degrees(np.arctan((p[2, 0] - midline_x) / (half_eye * NOSE_DEPTH_RATIO))))


def face_quality(chip: np.ndarray, landmarks: np.ndarray) -> FaceQuality:
    """All quality signals for one face: ``chip`` from ``align_face``, ``landmarks`` in the original image."""
    return FaceQuality(
        blur_variance=laplacian_variance(chip), yaw_deg=yaw_degrees(landmarks), roll_deg=roll_degrees(landmarks)
    )
