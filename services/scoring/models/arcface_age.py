"""An age member on InsightFace's MobileFaceNet: the ArcFace net's last map → K DEX heads (research-only).

Why: a linear DEX head on the frozen face-recognition map is the best single age predictor we have on UTKFace, and
trained on FG-NET's real ages too it is also the best on FG-NET (benchmarks/results/age_arcface_head.md, session 14:
the ensemble with it goes from 5.54 to 4.83 y on UTKFace held-out and from 3.54 to 3.11 y on FG-NET, person held out).

Input: the ArcFace crop (the chip's face frame resized bicubic to 112 px, ``arcface_mbf.arcface_chips``),
``(x − 127.5) / 127.5`` RGB. The member mirrors every face itself and averages the pooled map of face and mirror
*before* the heads (global mean + 2×2 grid, 2,560 features), exactly as the heads were trained
(``beauty.features.pooled_blocks``; ``DexHeadMember(mirror=True)``), so the ensemble runs it without flip TTA of its
own. Output: [N, 101], the mean of the K heads' softmax over ages 0..100.

Architecture without weights: the MobileFaceNet's graph plan is committed (``arcface_mbf_plan.json``, 12 KB; the
converter checks that the published ONNX still yields it), so untrained-weight speed runs need no model cache.
Weights: the converted ArcFace net from the model cache (``arcface_registry``) and the committed heads
``services/scoring/weights/dex_head_arcface.pt``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.scoring.models.onnx_graph import OnnxGraphNet
from services.scoring.training.heads import HeadEnsemble, load_heads
from services.scoring.training.member import DexHeadMember, committed_head_spec

NAME = "dex_head_arcface"
HEAD_FILE = f"{NAME}.pt"
PLAN_FILE = Path(__file__).with_name("arcface_mbf_plan.json")


@cache
def committed_plan() -> dict[str, Any]:
    """The MobileFaceNet's graph plan (nodes and attributes, no weights) as committed."""
    return json.loads(PLAN_FILE.read_text())


def image_digest(path: Path) -> str:
    """A training image's identity in the head file (``extra["train_images"]``): the first 16 hex digits of the
    SHA-1 of its bytes, so an evaluation can tell in-sample images whatever their folder or file name."""
    import hashlib

    return hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()[:16]


def out_of_sample_probs(extra: dict[str, Any]) -> dict[str, np.ndarray]:
    """Image digest → the age distribution heads that never saw the image gave it (recorded by the training script:
    FG-NET out-of-fold, person-disjoint; UTKFace train out-of-bag). ``howhot eval age`` scores the member's own
    training images with these, so its figures stay out-of-sample."""
    recorded = extra.get("out_of_sample")
    if not recorded:
        return {}
    probs = np.asarray(recorded["probs"].float().numpy(), dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # stored as fp16
    return dict(zip(recorded["images"], probs, strict=True))


def arcface_age_member() -> DexHeadMember:
    """The member's architecture with the committed heads' shapes (weights loaded by ``registry.create_model``)."""
    return DexHeadMember(OnnxGraphNet(committed_plan()), HeadEnsemble(committed_head_spec(HEAD_FILE)), mirror=True)


def load_member(model: DexHeadMember, backbone_weights: Path, head_weights: Path) -> DexHeadMember:
    """Load the ArcFace net's converted weights and the heads' file into ``model`` (strict)."""
    saved = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    model.backbone.load_state_dict(saved["state"], strict=True)
    heads, _ = load_heads(head_weights)
    model.heads.load_state_dict(heads.state_dict(), strict=True)
    return model.eval()
