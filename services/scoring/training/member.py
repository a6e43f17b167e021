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


class DexHeadMember(nn.Module):
    """backbone(x) → hooked map → (ReLU) → pooled features → mean softmax of K heads [N, 101]."""

    def __init__(self, backbone: nn.Module, heads: HeadEnsemble) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads
        self._map: torch.Tensor | None = None
        spec = heads.spec
        dict(backbone.named_modules())[spec.layer].register_forward_hook(self._keep)

    def _keep(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self._map = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.backbone(x)
        fmap = self._map
        if fmap is None:
            raise RuntimeError("the backbone's hooked layer did not run")
        self._map = None
        fmap = F.relu(fmap.float()) if self.heads.spec.relu else fmap.float()
        spec = self.heads.spec
        features = fmap.mean(dim=(2, 3)) if spec.pooling == "gap" else F.adaptive_avg_pool2d(fmap, GRID).flatten(1)
        if spec.with_probs:  # the backbone's own age distribution: the last output of (gender, age) or the only one
            age_probs = out[-1] if isinstance(out, tuple) else out
            features = torch.cat([features.float(), log_probs_feature(age_probs)], dim=1)
        return self.heads(features.float())


def dex_head_member(head_file: str, backbone_constructor: object) -> DexHeadMember:
    """The member's architecture with the committed heads' shapes (weights loaded by ``create_model``)."""
    path = committed_head_path(head_file)
    spec = HeadSpec(**torch.load(path, map_location="cpu", weights_only=True)["spec"]) if path.exists() else None
    if spec is None:
        raise FileNotFoundError(f"head weights {path} missing")
    return DexHeadMember(backbone_constructor(), HeadEnsemble(spec))  # type: ignore[operator]


def load_member_weights(member: DexHeadMember, backbone_weights: Path, head_weights: Path) -> DexHeadMember:
    """Load the backbone's converted weights and the heads' file into ``member`` (strict)."""
    member.backbone.load_state_dict(torch.load(backbone_weights, map_location="cpu", weights_only=True), strict=True)
    heads, _ = load_heads(head_weights)
    member.heads.load_state_dict(heads.state_dict(), strict=True)
    return member.eval()
