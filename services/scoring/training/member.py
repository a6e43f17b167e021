"""A trained DEX head as an ensemble member: its backbone's pretrained network + hook + pooling + K heads.

Why a separate member (and not a new output of the backbone): the backbone's converted weights stay exactly as
published (their port is tested against the original runtimes), and the head can be added to or removed from a
profile's calibration like any other member. Cost: one more pass of the backbone per batch (the scorer runs members
independently); for the CC0 net that is ~5 ms per face, for the WRN ~75–90 ms.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from services.scoring.training.heads import HeadEnsemble, HeadSpec, load_heads, log_probs_feature

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # committed head files (each < 5 MB)
GRID = 2  # must match services.scoring.evaluation.extract.GRID, the pooling the heads were trained on


def committed_head_path(file_name: str) -> Path:
    """Where a committed head file lives (``services/scoring/weights/<file_name>``)."""
    return WEIGHTS_DIR / file_name


def pool_map(fmap: torch.Tensor, pooling: str) -> torch.Tensor:
    """[N, C, H, W] → the features a head reads: "gap" (global mean), "grid" (2×2 average) or "gap+grid" (both)."""
    parts = {"gap": lambda: fmap.mean(dim=(2, 3)), "grid": lambda: F.adaptive_avg_pool2d(fmap, GRID).flatten(1)}
    return torch.cat([parts[kind]() for kind in pooling.split("+")], dim=1)


class DexHeadMember(nn.Module):
    """backbone(x) → hooked map → (ReLU) → pooled features → mean softmax of K heads [N, 101].

    ``mirror``: the member mirrors every face itself and averages the pooled features of face and mirror before the
    heads (the ArcFace age member's heads were trained on such averages), so it runs without the ensemble's flip TTA.
    """

    def __init__(self, backbone: nn.Module, heads: HeadEnsemble, mirror: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self.mirror = mirror
        self._map: torch.Tensor | None = None
        spec = heads.spec
        if mirror and spec.with_probs:
            raise ValueError("a mirroring member cannot read its backbone's own age output")
        dict(backbone.named_modules())[spec.layer].register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self._map = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        out = self.backbone(torch.cat([x, x.flip(-1)]) if self.mirror else x)
        fmap = self._map
        if fmap is None:
            raise RuntimeError("the backbone's hooked layer did not run")
        self._map = None
        fmap = F.relu(fmap.float()) if self.heads.spec.relu else fmap.float()
        spec = self.heads.spec
        features = pool_map(fmap, spec.pooling)
        if self.mirror:  # faces, then their mirrors: the mirror's grid is not flipped back (as the cached features)
            features = (features[:n] + features[n:]) / 2
        if spec.with_probs:  # the backbone's own age distribution: the last output of (gender, age) or the only one
            age_probs = out[-1] if isinstance(out, tuple) else out
            features = torch.cat([features.float(), log_probs_feature(age_probs)], dim=1)
        return self.heads(features.float())


def committed_head_spec(file_name: str) -> HeadSpec:
    """The committed heads' spec (their shapes), read without building them."""
    path = committed_head_path(file_name)
    if not path.exists():
        raise FileNotFoundError(f"head weights {path} missing")
    return HeadSpec(**torch.load(path, map_location="cpu", weights_only=True)["spec"])


def dex_head_member(head_file: str, backbone_constructor: object) -> DexHeadMember:
    """The member's architecture with the committed heads' shapes (weights loaded by ``create_model``)."""
    return DexHeadMember(backbone_constructor(), HeadEnsemble(committed_head_spec(head_file)))  # type: ignore[operator]


def load_member_weights(member: DexHeadMember, backbone_weights: Path, head_weights: Path) -> DexHeadMember:
    """Load the backbone's converted weights and the heads' file into ``member`` (strict)."""
    member.backbone.load_state_dict(torch.load(backbone_weights, map_location="cpu", weights_only=True), strict=True)
    heads, _ = load_heads(head_weights)
    member.heads.load_state_dict(heads.state_dict(), strict=True)
    return member.eval()
