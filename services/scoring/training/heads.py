"""The DEX head: standardised pooled backbone features → dropout → linear 101-way age softmax.

Why a head on frozen features: a CPU cannot fine-tune a 6.2-GMAC WRN in the time we have, but the backbone's
penultimate map already encodes age; what it lacks is calibration to *our* crops (the face service's chips) and our
data's age distribution. The head's output is a distribution over ages 0..100 and its DEX expectation is the age, so
it plugs into the ensemble like any other member. A head file holds K heads (one per bootstrap sample); the member
averages their distributions, as DEX averages its networks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AGE_CLASSES = 101  # ages 0..100, DEX's output layer
AGE_VALUES = np.arange(AGE_CLASSES, dtype=np.float64)
FEATURE_EPS = 1e-6  # standard deviation floor for features that are constant on the training set
HEAD_FORMAT = 1  # bump when the saved layout changes
PROB_FLOOR = 1e-4  # log P(age) floor for the backbone-output features: keeps empty classes finite and bounded


def log_probs_feature(probs: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The backbone-output features of a ``with_probs`` head: log of its age distribution, floored."""
    if isinstance(probs, torch.Tensor):
        return torch.log(probs.float() + PROB_FLOOR)
    return np.log(np.asarray(probs, dtype=np.float64) + PROB_FLOOR)


@dataclass(frozen=True)
class HeadSpec:
    """What a head reads and how it was built (saved with the weights, so loading needs no guessing)."""

    backbone: str  # registry member whose features feed the head
    layer: str  # backbone module hooked (see services.scoring.evaluation.extract.FEATURE_LAYERS)
    relu: bool  # ReLU applied to the hooked map before pooling
    pooling: str  # "grid" (2×2 average) or "gap"
    in_features: int
    hidden: int = 0  # 0: linear head; >0: one hidden ReLU layer of this width
    dropout: float = 0.0
    members: int = 1  # K bootstrap heads in the file
    with_probs: bool = False  # also read log P(age) of the backbone's own age output (its knowledge as a prior)
    label_sigma: float = 0.0  # training targets: 0 = one-hot (DEX), >0 = Gaussian over classes with this σ (years)


class DexHead(nn.Module):
    """One head: (x − mean)/std → dropout → [linear → ReLU] → linear 101; returns logits."""

    def __init__(self, in_features: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.dropout = nn.Dropout(dropout)
        layers: list[nn.Module] = []
        width = in_features
        if hidden:
            layers += [nn.Linear(in_features, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, AGE_CLASSES))
        self.net = nn.Sequential(*layers)

    def set_standardization(self, features: np.ndarray) -> None:
        """Use the training features' per-dimension mean and std (fixed afterwards)."""
        x = torch.as_tensor(np.asarray(features, dtype=np.float32))
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(FEATURE_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.dropout((x - self.mean) / self.std))


class HeadEnsemble(nn.Module):
    """K heads; ``forward`` returns the mean of their softmax distributions [N, 101] (the DEX ensemble)."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        self.heads = nn.ModuleList(DexHead(spec.in_features, spec.hidden, spec.dropout) for _ in range(spec.members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.softmax(h(x), dim=1) for h in self.heads]).mean(0)


def expected_age(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """DEX expectation Σ age·p over 0..100."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    return p.astype(np.float64) @ AGE_VALUES


def half_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp16, for saved weights (halves the file; the logits move by < 1e-3)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def float_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Saved fp16 tensors back to fp32 for loading."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def save_heads(path: Path, ensemble: HeadEnsemble, extra: dict[str, Any] | None = None) -> None:
    """Weights as fp16 (``half_state``) plus the spec and ``extra`` metadata."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": HEAD_FORMAT, "spec": asdict(ensemble.spec), "state": half_state(ensemble.state_dict()),
                "extra": extra or {}}, path)


def load_heads(path: Path) -> tuple[HeadEnsemble, dict[str, Any]]:
    """The saved ensemble in eval mode (fp32) and its ``extra`` metadata."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path}: head format {blob.get('format')}, expected {HEAD_FORMAT}")
    ensemble = HeadEnsemble(HeadSpec(**blob["spec"]))
    ensemble.load_state_dict(float_state(blob["state"]))
    return ensemble.eval(), blob["extra"]
