"""VGG-16 (Simonyan & Zisserman 2015), the network DEX fine-tuned: 13 conv3×3 layers in 5 stages + max-pools.

torchvision is not a dependency, so the feature extractor is written out here (the classifier is replaced by a DEX
head reading the ``features`` map). DEX started from ImageNet weights and pre-trained on IMDB-WIKI; neither is
reachable offline, so from scratch this is only worth running on a GPU with IMDB-WIKI (see
benchmarks/results/age_training.md). Input: 224×224 RGB, ImageNet mean/std normalisation.
"""

from __future__ import annotations

import torch
from torch import nn

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, conv layers) per stage
INPUT_SIZE = 224


class VGG16Features(nn.Module):
    """The convolutional part of VGG-16 (with BatchNorm, which trains from scratch far more reliably)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width, convs in VGG16_STAGES:
            for _ in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def vgg16_features() -> VGG16Features:
    """An untrained VGG-16 feature extractor (7×7×512 map for a 224 input)."""
    return VGG16Features()
