"""Image → one face chip through the production face pipeline (detect → pick a face → align), with a fallback.

Why "largest and most central": evaluation photos show one labelled person; a bystander is usually smaller or
off-centre. Why a fallback instead of dropping misses: dropping biases the figures towards easy faces (PEERS.md
lesson 3), so a miss is *counted* as a failure and still gets a prediction: the whole image, treated as a tight face
crop (the ArcFace face frame stretched over the image), is aligned with edge replication re-creating the margin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from libs.common.alignment import align_face
from libs.common.chips import ARCFACE_TEMPLATE_112

ARCFACE_FRAME = 112.0  # the ArcFace template's frame side in pixels
CENTRALITY_WEIGHT = 0.5  # a face at the image corner counts as half its size when choosing the labelled person


@dataclass(frozen=True)
class FaceChip:
    """The chip of the chosen face, its landmarks (chip and image pixels) and how it was found."""

    chip: np.ndarray  # 256×256×3 uint8
    chip_landmarks: np.ndarray  # (5, 2) float32
    image_landmarks: np.ndarray  # (5, 2) float32
    detected: bool
    score: float  # detector score, 0 for the fallback
    n_faces: int


def fallback_landmarks(height: int, width: int) -> np.ndarray:
    """Landmarks of a face that fills the image (the ArcFace frame stretched over it)."""
    return (ARCFACE_TEMPLATE_112 * np.array([width / ARCFACE_FRAME, height / ARCFACE_FRAME])).astype(np.float32)


def choose_face(faces: Sequence[object], height: int, width: int) -> object | None:
    """The largest face, discounted by its distance from the image centre (the labelled person of a photo)."""
    if not faces:
        return None
    centre = np.array([width / 2.0, height / 2.0])
    half_diagonal = float(np.hypot(width, height) / 2.0)

    def weight(face: object) -> float:
        box = face.box  # type: ignore[attr-defined]
        middle = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        offset = min(float(np.linalg.norm(middle - centre)) / half_diagonal, 1.0)
        return float(face.size) * (1.0 - CENTRALITY_WEIGHT * offset)  # type: ignore[attr-defined]

    return max(faces, key=weight)


def chosen_landmarks(image: np.ndarray, faces: Sequence[object]) -> tuple[np.ndarray, bool, float]:
    """(image landmarks, detected, detector score) of the chosen face, or of the whole-image fallback (score 0)."""
    height, width = image.shape[:2]
    face = choose_face(faces, height, width)
    if face is None:
        return fallback_landmarks(height, width), False, 0.0
    return face.landmarks_array(), True, float(face.score)  # type: ignore[attr-defined]


def chip_for(image: np.ndarray, faces: Sequence[object]) -> FaceChip:
    """The chip of the chosen detected face, or of the whole-image fallback when there is none."""
    landmarks, detected, score = chosen_landmarks(image, faces)
    aligned = align_face(image, landmarks)
    return FaceChip(aligned.chip, aligned.landmarks.astype(np.float32), np.asarray(landmarks, np.float32), detected,
                    score, len(faces))
