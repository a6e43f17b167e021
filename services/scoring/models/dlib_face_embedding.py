"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch, inference only.

Why: a 128-d identity embedding (99.38 % on LFW per dlib) is a much stronger visual feature than the age/gender
members' penultimate maps, and the weights are CC0. dlib itself stays out of the environment: the weights are parsed
from dlib's own serialization by ``convert_dlib``.

Architecture (dlib's ``anet_type``): conv7×7/2 (unpadded) → affine → ReLU → maxpool 3×3/2 (unpadded) → 3 residual 32
→ down 64 + 3 × 64 → down 128 + 2 × 128 → down 256 + 2 × 256 → down 256 → global average → 128×256 fc without bias.
Residual blocks are those of the CC0 age net (``dlib_age_resnet.ResidualBlock``): dlib's add_prev of a 2×2/2 average-
pooled shortcut and an unpadded stride-2 conv, zero-padding the smaller tensor at the end of channels/rows/columns.
The last two downsampling blocks really do mix sizes (3×3 conv vs 4×4 pool, then 1×1 vs 2×2), so the padding
matters. dlib's ``loss_metric`` compares raw (not normalised) outputs: same person when the distance is < 0.6.

Input: a 150×150 RGB dlib chip (``get_face_chip_details(shape, 150, 0.25)``), ``(x − mean) / 256`` with dlib's
input_rgb_image means, NCHW float32 — see ``preprocess``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.scoring.models.convert_dlib import DlibNet
from services.scoring.models.dlib_age_resnet import ChannelAffine, ResidualBlock

EMBEDDING_SIZE = 128
INPUT_SIZE = 150
CHIP_PADDING = 0.25  # dlib's compute_face_descriptor default
# chip geometry (crops.GEOMETRY_BY_CROP): still the mean-face estimate, which every head on the embedding was trained
# on; the CC0 nets' measured geometry would fit it slightly better (benchmarks/results/age_chip_geometry.md)
CHIP_CROP = "dlib_chip_mean_face"
MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized defaults (also stored in the .dat file)
SCALE = 1.0 / 256.0
SAME_PERSON_DISTANCE = 0.6  # dlib's documented threshold (loss_metric dist_thresh in the file)
# (in_channels, out_channels, downsample) of each residual block, input side first
BLOCKS = (
    *[(32, 32, False)] * 3,
    (32, 64, True), *[(64, 64, False)] * 3,
    (64, 128, True), *[(128, 128, False)] * 2,
    (128, 256, True), *[(256, 256, False)] * 2,
    (256, 256, True),
)


class DlibFaceEmbedding(nn.Module):
    """The 5.6 M-parameter metric ResNet: [N, 3, 150, 150] normalised RGB → [N, 128] embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        self.stem_affine = ChannelAffine(32)
        self.blocks = nn.Sequential(*(ResidualBlock(i, o, downsample=d) for i, o, d in BLOCKS))
        self.fc = nn.Linear(256, EMBEDDING_SIZE, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, stride=2)
        return self.fc(self.blocks(out).mean(dim=(2, 3)))


def dlib_face_embedding() -> DlibFaceEmbedding:
    """An uninitialised network (load converted weights with ``load_state_dict``)."""
    return DlibFaceEmbedding()


def state_dict_from_dlib(net: DlibNet) -> dict[str, torch.Tensor]:
    """Map the parsed dlib layers (input first) onto ``DlibFaceEmbedding``'s parameter names.

    The parsed stream holds convs and affines in forward order: stem conv+affine, then per block conv1, affine1,
    conv2, affine2; then the fc, whose dlib weights are [in, out] (dlib computes x·W), i.e. nn.Linear's transposed.
    """
    convs = [layer.values for layer in net.layers if layer.kind == "con"]
    affines = [layer.values for layer in net.layers if layer.kind == "affine"]
    fcs = [layer.values for layer in net.layers if layer.kind == "fc_no_bias"]
    if len(convs) != 1 + 2 * len(BLOCKS) or len(affines) != len(convs) or len(fcs) != 1:
        raise ValueError(f"unexpected layer counts: {len(convs)} con, {len(affines)} affine, {len(fcs)} fc")

    def t(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    names = ["stem"] + [f"blocks.{b}.conv{j}" for b in range(len(BLOCKS)) for j in (1, 2)]
    affine_names = ["stem_affine"] + [f"blocks.{b}.affine{j}" for b in range(len(BLOCKS)) for j in (1, 2)]
    state: dict[str, torch.Tensor] = {}
    for name, conv, affine_name, affine in zip(names, convs, affine_names, affines, strict=True):
        state[f"{name}.weight"] = t(conv["weight"])
        state[f"{name}.bias"] = t(conv["bias"])
        state[f"{affine_name}.scale"] = t(affine["scale"]).reshape(1, -1, 1, 1)
        state[f"{affine_name}.offset"] = t(affine["offset"]).reshape(1, -1, 1, 1)
    state["fc.weight"] = t(fcs[0]["weight"].T)
    return state


def preprocess(chips: np.ndarray, mean_rgb: tuple[float, float, float] = MEAN_RGB) -> torch.Tensor:
    """uint8 [N, 150, 150, 3] RGB chips → float32 NCHW ``(x − mean) / 256`` (dlib's input_rgb_image_sized)."""
    x = torch.from_numpy(np.ascontiguousarray(chips)).float()
    x = (x - torch.tensor(mean_rgb, dtype=torch.float32)) * SCALE
    return x.permute(0, 3, 1, 2).contiguous()


def embed(model: nn.Module, chips: np.ndarray, flip: bool = False, batch: int | None = 32) -> np.ndarray:
    """float32 [N, 128] embeddings of uint8 RGB chips; ``flip`` averages each with its mirror's embedding.

    Face and mirror go through one forward pass (rows [faces, mirrors]), so forward hooks see both; ``batch=None``
    runs all chips in that one pass (what a caller reading hooked activations needs)."""
    out = []
    device = next(model.parameters()).device
    step = batch or max(len(chips), 1)
    with torch.inference_mode():
        for start in range(0, len(chips), step):
            x = preprocess(chips[start:start + step]).to(device)
            e = model(torch.cat([x, x.flip(-1)]) if flip else x)
            if flip:
                e = (e[: len(x)] + e[len(x):]) / 2
            out.append(e.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, EMBEDDING_SIZE), np.float32)
