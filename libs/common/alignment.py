"""Face alignment: a similarity transform (Umeyama) from the 5 detected landmarks onto ``CHIP_TEMPLATE``.

The chip is the contract with the scoring service (``libs.common.chips``): 256x256 RGB, landmarks near the template,
with a DEX-style margin around the face. Where that margin falls outside the photo (tight crops, faces at the edge)
the border pixels are replicated rather than painted black: the peers' measurements showed that edge replication
recovers most of the age accuracy a black or clipped margin loses. Large faces are shrunk with Pillow's antialiased
resize before the warp, so the bilinear warp never undersamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from libs.common.pixels import to_rgb_uint8

ANTIALIAS_BELOW_SCALE = 0.75  # shrinking by more than this in the warp would alias; pre-shrink with a proper filter


@dataclass(frozen=True)
class AlignedFace:
    """A face chip, the landmarks' positions inside it, and the 2x3 matrix that maps image → chip pixels."""

    chip: np.ndarray  # CHIP_SIZE x CHIP_SIZE x 3 uint8 RGB
    landmarks: np.ndarray  # (5, 2) float32, chip pixels
    matrix: np.ndarray  # (2, 3) float64


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping ``src`` (N, 2) onto ``dst`` (N, 2); 2x3 matrix.

    Same maths as skimage's SimilarityTransform.estimate, without the dependency; reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (sigma * d).sum() / src_var if estimate_scale and src_var > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Bilinear warp of an RGB uint8 image by a 2x3 image → output matrix, replicating edge pixels outside the image.

    Pixel centres sit at integer coordinates (the cv2.warpAffine convention the ArcFace template was made with).
    """
    h, w = image.shape[:2]
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    grid = np.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], -1)  # align_corners=False normalisation
    pixels = image if image.flags.writeable else image.copy()  # torch refuses read-only buffers
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    out = F.grid_sample(
        tensor, torch.from_numpy(grid)[None].float(), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, template: np.ndarray = CHIP_TEMPLATE
) -> AlignedFace:
    """Warp the face with these 5 landmarks (image pixels) into a ``size``² chip laid out like ``template``.

    ``image`` may be in any format ``FaceDetector`` accepts (gray, RGBA, 16-bit...); the chip is always RGB uint8.
    """
    image = to_rgb_uint8(np.asarray(image))
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    template = np.asarray(template, dtype=np.float64) * (size / CHIP_SIZE)
    matrix = umeyama(landmarks, template)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    source, source_matrix = image, matrix
    if scale < ANTIALIAS_BELOW_SCALE:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        source = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None))
        # pixel-centre convention: x_small = (x + 0.5) * new_w / w - 0.5
        shrink = np.array([[new_w / w, 0, 0.5 * new_w / w - 0.5], [0, new_h / h, 0.5 * new_h / h - 0.5], [0, 0, 1]])
        source_matrix = matrix @ np.linalg.inv(shrink)
    chip = warp_affine(source, source_matrix, size)
    return AlignedFace(chip=chip, landmarks=apply_affine(matrix, landmarks).astype(np.float32), matrix=matrix)
