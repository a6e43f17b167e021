"""Crop geometry: similarity fits, the DEX face box and margin, dlib chips landing landmarks on dlib's mean face."""

from __future__ import annotations

import numpy as np

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.scoring import crops
from services.scoring.chipsource import chip_from_landmarks


def _dot_image(points: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """A black image with a bright 3×3 dot at each (integer-rounded) point."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255
    return image


def _centroid(image: np.ndarray) -> np.ndarray:
    weights = image[..., 0].astype(np.float64)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    return np.array([(xx * weights).sum(), (yy * weights).sum()]) / weights.sum()


def test_similarity_transform_recovers_a_known_similarity() -> None:
    src = np.array([[10.0, 20.0], [50.0, 22.0], [30.0, 45.0], [15.0, 60.0], [48.0, 61.0]])
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    matrix = crops.similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_dex_box_is_square_centred_below_the_eyes_and_scaled_by_the_face() -> None:
    x0, y0, x1, y1 = crops.dex_face_box(CHIP_TEMPLATE)
    assert abs((x1 - x0) - (y1 - y0)) < 1e-9
    eyes_y = CHIP_TEMPLATE[:2, 1].mean()
    mouth_y = CHIP_TEMPLATE[3:, 1].mean()
    assert y0 < eyes_y < (y0 + y1) / 2 < mouth_y < y1
    assert abs((x0 + x1) / 2 - (CHIP_TEMPLATE[:, 0].mean() + 0.5)) < 2.0
    doubled = crops.dex_face_box(CHIP_TEMPLATE * 2)
    assert abs((doubled[2] - doubled[0]) - 2 * (x1 - x0)) < 1e-6


def test_dex_crop_with_template_landmarks_stays_almost_inside_the_chip() -> None:
    """The chip's margin covers the WRN crop of a canonical face except a thin band below the chin (edge-replicated)."""
    x0, y0, x1, y1 = crops.dex_face_box(CHIP_TEMPLATE)
    side = x1 - x0
    crop_side = side * (1 + 2 * crops.DEX_MARGIN)
    assert x0 - crops.DEX_MARGIN * side >= 0 and x1 + crops.DEX_MARGIN * side <= CHIP_SIZE
    assert y0 - crops.DEX_MARGIN * side >= 0
    assert y1 + crops.DEX_MARGIN * side - CHIP_SIZE <= 0.1 * crop_side


def test_dex_crop_replicates_edges_instead_of_black() -> None:
    chip = np.full((CHIP_SIZE, CHIP_SIZE, 3), 200, dtype=np.uint8)
    tiny_face = CHIP_TEMPLATE * 3 - CHIP_SIZE  # a face so large its box leaves the chip on every side
    crop = crops.dex_crop(chip, tiny_face, size=64)
    assert crop.shape == (64, 64, 3) and crop.min() == 200


def test_dlib_chip_puts_the_eyes_where_its_geometry_has_them() -> None:
    """dlib's convention: a landmark's pixel lands on template·size (pixel indices); the mean-face geometry
    kept for the embedding reads the template as Pillow coordinates, half a pixel up and left."""
    size, padding = 64, 0.2
    for geometry, shift in ((crops.DLIB_FIVE_POINT, 0.0), (crops.DLIB_MEAN_FACE, -0.5)):
        for eye in range(2):
            image = _dot_image(CHIP_TEMPLATE[eye : eye + 1])
            chip = crops.dlib_chip(image, CHIP_TEMPLATE, size, padding, geometry)
            expected = (geometry.template[eye] + padding) / (1 + 2 * padding) * size + shift
            np.testing.assert_allclose(_centroid(chip), expected, atol=0.6)


def test_the_measured_geometry_shows_the_face_larger_than_the_mean_face_estimate() -> None:
    """What the measurement corrected: with dlib's fit weights the mean-face estimate cut the face about 4 % too
    small (it put the nose tip too close to the eyes), and a little low."""
    new = crops.dlib_chip_transform(CHIP_TEMPLATE, 64)
    old = crops.dlib_chip_transform(CHIP_TEMPLATE, 64, geometry=crops.DLIB_MEAN_FACE)
    ratio = np.sqrt(abs(np.linalg.det(new[:, :2])) / abs(np.linalg.det(old[:, :2])))
    assert 1.02 < ratio < 1.07
    eyes = CHIP_TEMPLATE[:2].mean(axis=0) + 0.5
    assert (new[:, :2] @ eyes + new[:, 2])[1] < (old[:, :2] @ eyes + old[:, 2])[1]  # the eyes sit higher


def test_flipped_landmarks_keep_their_meaning() -> None:
    flipped = crops.hflip_landmarks(CHIP_TEMPLATE, CHIP_SIZE)
    assert flipped[0, 0] < flipped[1, 0] and flipped[3, 0] < flipped[4, 0]
    np.testing.assert_allclose(crops.hflip_landmarks(flipped, CHIP_SIZE), CHIP_TEMPLATE, atol=1e-5)


def test_chip_from_landmarks_lands_landmarks_on_the_template() -> None:
    rng = np.random.default_rng(0)
    landmarks = CHIP_TEMPLATE * 0.8 + 20 + rng.normal(0, 0.5, CHIP_TEMPLATE.shape)
    image = _dot_image(landmarks[2:3], size=300)
    chip, chip_landmarks = chip_from_landmarks(image, landmarks)
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3)
    np.testing.assert_allclose(chip_landmarks, CHIP_TEMPLATE, atol=2.0)
    np.testing.assert_allclose(_centroid(chip), chip_landmarks[2], atol=0.6)
