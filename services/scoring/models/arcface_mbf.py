"""InsightFace's MobileFaceNet recognition net (buffalo_s ``w600k_mbf``): a 512-d identity embedding of a 112-px chip.

A second face embedding beside dlib's, used as a feature block for attractiveness: trained with ArcFace on
WebFace600K, it encodes the face's geometry differently from dlib's metric net, and the two blocks together predict
rated attractiveness better than either (benchmarks/results/beauty.md, v3). The 112-px ArcFace chip is exactly the
face frame of the 256-px chip contract (``libs.common.chips`` scales the ArcFace template into that frame), so it is
a resize of the frame, no new alignment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from libs.common.chips import FACE_FRAME_BOX

INPUT_SIZE = 112
MEAN, SCALE = 127.5, 1.0 / 127.5  # InsightFace recognition preprocessing: (x - 127.5) / 127.5, RGB
EMBEDDING_SIZE = 512
FINAL_MAP_MODULE = "layers.n92"  # the PRelu node whose output (tensor "509") is the last 512×7×7 map
FINAL_MAP_TENSOR = "509"


def arcface_chips(chips: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, 112, 112, 3]: the face frame of each 256-px chip resized (bicubic) to the ArcFace input."""
    if not len(chips):
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    return np.stack([np.asarray(Image.fromarray(np.asarray(chip, dtype=np.uint8)).resize(
        (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC, box=FACE_FRAME_BOX)) for chip in chips])


def embed(model: nn.Module, crops: np.ndarray, flip: bool = True) -> np.ndarray:
    """L2-normalised embeddings [N, 512] of uint8 112-px crops; with ``flip`` the mean of face and mirror first."""
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float()
    x = (x - MEAN) * SCALE
    with torch.inference_mode():
        out = model(torch.cat([x, x.flip(3)]) if flip else x).float()
        if flip:
            out = (out[: len(crops)] + out[len(crops):]) / 2
        out = out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out.cpu().numpy()
