"""Running the members on a batch of chips: crop, normalise (from each member's config), forward, flip TTA.

One forward pass per member per batch: the flipped crops ride in the same batch as the originals (2N rows), and
their probabilities are averaged with the originals' (flip test-time augmentation: faces are nearly symmetric, the
networks are not, so the average removes part of their left/right noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from services.scoring.crops import GEOMETRY_BY_CROP, dex_crop, dlib_chip
from services.scoring.models.registry import PretrainedConfig


@dataclass
class MemberOutput:
    """One member's probabilities for N faces; ``age_probs`` over its own ``age_values``, ``p_female`` in [0, 1]."""

    name: str
    version: str
    age_values: np.ndarray | None  # [K] class values (ages), None for gender-only members
    age_probs: np.ndarray | None  # [N, K]
    p_female: np.ndarray | None  # [N]

    @property
    def expected_age(self) -> np.ndarray | None:
        """DEX expectation Σ value·p over the member's own classes."""
        return None if self.age_probs is None else self.age_probs @ self.age_values


def member_crops(cfg: PretrainedConfig, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, S, S, 3] RGB crops of the chips in ``cfg``'s training geometry."""
    crop: Callable[[np.ndarray, np.ndarray], np.ndarray]
    if cfg.crop == "face_frame":  # the ArcFace template is the chip's own face frame: no landmarks needed
        from services.scoring.models.arcface_mbf import arcface_chips

        return arcface_chips(chips)
    if cfg.crop == "dex_box":
        def crop(c: np.ndarray, lm: np.ndarray) -> np.ndarray:
            return dex_crop(c, lm, cfg.input_size, cfg.crop_margin)
    else:
        geometry = GEOMETRY_BY_CROP[cfg.crop]

        def crop(c: np.ndarray, lm: np.ndarray) -> np.ndarray:
            return dlib_chip(c, lm, cfg.input_size, cfg.crop_margin, geometry)
    return np.stack([crop(c, lm) for c, lm in zip(chips, landmarks, strict=True)])


def to_input(cfg: PretrainedConfig, crops: np.ndarray, flip: bool) -> torch.Tensor:
    """float32 NCHW network input ``(x − mean) · scale`` in the member's colour order, flipped copies appended."""
    x = torch.from_numpy(crops).float()
    if cfg.color_order == "BGR":
        x = x.flip(-1)
    x = (x - torch.tensor(cfg.mean)) * cfg.scale
    x = x.permute(0, 3, 1, 2)
    if flip:
        x = torch.cat([x, x.flip(-1)])
    return x.contiguous(memory_format=torch.channels_last)


def _merge_flip(probs: torch.Tensor, n: int, flip: bool) -> np.ndarray:
    out = probs.float()
    if flip:
        out = (out[:n] + out[n:]) / 2
    return out.cpu().numpy().astype(np.float64)


def run_member(
    cfg: PretrainedConfig,
    model: nn.Module,
    crops: np.ndarray,
    flip: bool = True,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> MemberOutput:
    """One forward pass of ``model`` over all crops (and their mirrors); probabilities back as numpy."""
    n = len(crops)
    x = to_input(cfg, crops, flip)
    device = device or torch.device("cpu")
    x = x.to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16,
                                                  enabled=autocast_dtype is not None):
        out = model(x)
    age_probs = p_female = None
    if cfg.task == "age+gender":
        gender, age = out
        p_female = _merge_flip(gender, n, flip)[:, cfg.female_index]
        age_probs = _merge_flip(age, n, flip)
    elif cfg.task == "age":
        age_probs = _merge_flip(out, n, flip)
    else:
        p_female = _merge_flip(out, n, flip)[:, cfg.female_index]
    if age_probs is not None:
        age_probs = age_probs / age_probs.sum(axis=1, keepdims=True)  # bf16 rounding can leave sums off 1
    values = np.asarray(cfg.age_values, dtype=np.float64) if cfg.age_values else None
    return MemberOutput(cfg.name, cfg.version, values, age_probs, p_female)
