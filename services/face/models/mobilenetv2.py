"""MobileNetV2 (width 1.0) laid out like ``tf.keras.applications.MobileNetV2``, as a RetinaFace feature extractor.

The layout mirrors Keras (not torchvision) because the default detector's weights come from a Keras model: stride-2
convolutions use Keras' explicit asymmetric zero padding (one pixel bottom/right) followed by a VALID convolution,
and batch norm uses Keras' epsilon. The extractor returns the outputs of blocks 5, 12 and 15 (strides 8, 16, 32),
which is where peteryuX/retinaface-tf2 taps the backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPS = 1e-3  # tf.keras.applications.MobileNetV2's BatchNormalization epsilon
STEM_CHANNELS = 32
# (expansion, out channels, repeats, first stride) — the MobileNetV2 paper's table 2, as in Keras
INVERTED_RESIDUAL_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2)]
TAP_BLOCKS = (5, 12, 15)  # block indices whose outputs feed the FPN (strides 8, 16, 32)
TAP_CHANNELS = (32, 96, 160)
KERAS_STRIDE2_PAD = (0, 1, 0, 1)  # F.pad order (left, right, top, bottom): Keras' correct_pad for even inputs


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise (3x3) → project (1x1), with a residual add when shapes allow; block 0 has no expand."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int, eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.stride = stride
        self.use_residual = stride == 1 and in_ch == out_ch
        self.has_expand = expansion != 1
        if self.has_expand:
            self.expand = nn.Conv2d(in_ch, hidden, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden, eps=eps)
        padding = 1 if stride == 1 else 0  # stride 2: Keras' asymmetric padding is applied in forward()
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, padding=padding, groups=hidden, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(hidden, eps=eps)
        self.project = nn.Conv2d(hidden, out_ch, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self.expand_bn(self.expand(out)), inplace=True)  # fresh tensor: in place saves a copy
        if self.stride != 1:
            out = F.pad(out, KERAS_STRIDE2_PAD)
        out = F.relu6(self.depthwise_bn(self.depthwise(out)), inplace=True)
        out = self.project_bn(self.project(out))
        return x + out if self.use_residual else out


class MobileNetV2Features(nn.Module):
    """The MobileNetV2 trunk up to block 15 (block 16 and the 1280-channel head are unused by RetinaFace)."""

    out_channels = TAP_CHANNELS

    def __init__(self, eps: float = KERAS_BN_EPS) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, STEM_CHANNELS, 3, 2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS, eps=eps)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for expansion, out_ch, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
            for i in range(repeats):
                blocks.append(InvertedResidual(in_ch, out_ch, first_stride if i == 0 else 1, expansion, eps))
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self.bn1(self.conv1(F.pad(x, KERAS_STRIDE2_PAD))), inplace=True)
        taps: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in TAP_BLOCKS:
                taps.append(x)
        return taps
