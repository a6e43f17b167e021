"""Umeyama alignment, the chip warp and the quality heuristics on synthetic inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from libs.common.alignment import align_face, apply_affine, umeyama, warp_affine
from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.face.quality import laplacian_variance, roll_degrees, yaw_degrees


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"), [(1.0, 0.0, 0.0, 0.0), (0.37, 23.0, 40.0, -12.5), (2.5, -70, 3, 9)]
)
def test_umeyama_recovers_a_known_similarity(scale: float, angle: float, tx: float, ty: float) -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, size=(5, 2))
    matrix = similarity(scale, angle, tx, ty)
    np.testing.assert_allclose(umeyama(src, apply_affine(matrix, src)), matrix, atol=1e-9)


def test_umeyama_never_reflects() -> None:
    src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mirrored = src * [-1, 1]
    linear = umeyama(src, mirrored)[:, :2]
    assert np.linalg.det(linear) > 0


def test_align_face_maps_landmarks_exactly_onto_template() -> None:
    # landmarks of a face rotated by 30° and shrunk: the chip must undo exactly that
    image_from_chip = similarity(1.6, 30.0, 120.0, 80.0)
    landmarks = apply_affine(image_from_chip, CHIP_TEMPLATE)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(600, 700, 3), dtype=np.uint8)
    aligned = align_face(image, landmarks)
    assert aligned.chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)
    np.testing.assert_allclose(aligned.landmarks, CHIP_TEMPLATE, atol=1e-3)


def test_warp_samples_the_right_pixels_and_replicates_borders() -> None:
    # a horizontal ramp: value = x, so a pure translation shifts values by exactly tx
    ramp = np.tile(np.arange(200, dtype=np.uint8)[None, :, None], (100, 1, 3))
    shifted = warp_affine(ramp, np.array([[1.0, 0.0, -10.0], [0.0, 1.0, 0.0]]), 64)
    np.testing.assert_array_equal(shifted[:, :, 0], np.tile(np.arange(10, 74, dtype=np.uint8), (64, 1)))
    beyond = warp_affine(ramp, np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 0.0]]), 64)
    assert (beyond[:, :50, 0] == 0).all()  # left of the image: the first column repeated, not black-by-accident
    assert (warp_affine(ramp + 5, np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 0.0]]), 64)[:, :50, 0] == 5).all()


def test_large_face_is_antialiased_before_warp() -> None:
    stripes = np.zeros((2000, 2000, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing would give a mostly black or white chip
    landmarks = apply_affine(similarity(8.0, 0.0, 0.0, 0.0), CHIP_TEMPLATE)
    chip = align_face(stripes, landmarks).chip
    assert abs(float(chip.mean()) - 127.5) < 10 and chip.std() < 20


def test_laplacian_variance_drops_with_blur() -> None:
    rng = np.random.default_rng(2)
    sharp = rng.integers(0, 255, size=(CHIP_SIZE, CHIP_SIZE, 3)).astype(np.uint8)
    kernel = np.ones(5) / 5
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, sharp.astype(float))
    blurred = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, blurred).astype(np.uint8)
    assert laplacian_variance(sharp) > 10 * laplacian_variance(blurred)


def test_pose_heuristics() -> None:
    frontal = CHIP_TEMPLATE.astype(np.float64)
    assert abs(yaw_degrees(frontal)) < 3 and abs(roll_degrees(frontal)) < 1
    turned = frontal.copy()
    turned[2, 0] += 20  # nose moved towards image-right
    assert yaw_degrees(turned) > 20
    rolled = apply_affine(similarity(1.0, 15.0, 0, 0), frontal)
    assert roll_degrees(rolled) == pytest.approx(15.0, abs=0.5)
    assert abs(yaw_degrees(rolled)) < 3
