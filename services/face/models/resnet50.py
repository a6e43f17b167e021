"""ResNet-50 with torchvision's module names, as a RetinaFace feature extractor (layers 2-4, strides 8/16/32).

Reimplemented instead of importing torchvision (which does not import beside this torch build); the parameter
names match torchvision's ``resnet50`` wrapped by ``IntermediateLayerGetter``, so ternaus/retinaface's published
state dict (keys ``body.conv1.weight``, ``body.layer2.0.downsample.0.weight``, ...) loads unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

LAYER_BLOCKS = (3, 4, 6, 3)  # ResNet-50
LAYER_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4  # bottleneck output = width * 4
TAP_CHANNELS = (512, 1024, 2048)  # layer2, layer3, layer4 outputs


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv, "ResNet v1.5")."""

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Features(nn.Module):
    """Stem + layer1..layer4 of ResNet-50; returns the outputs of layer2, layer3 and layer4."""

    out_channels = TAP_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for index, (blocks, width) in enumerate(zip(LAYER_BLOCKS, LAYER_WIDTHS, strict=True)):
            stride = 1 if index == 0 else 2
            downsample = nn.Sequential(
                nn.Conv2d(in_ch, width * EXPANSION, 1, stride, bias=False), nn.BatchNorm2d(width * EXPANSION)
            )
            layers = [Bottleneck(in_ch, width, stride, downsample)]
            in_ch = width * EXPANSION
            layers += [Bottleneck(in_ch, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]
