"""Training the attractiveness head on cached member features (MEBeauty, official 2022 split, duplicates merged).

Model selection uses the validation split only: feature block set, block balancing, ridge alpha, DEX weight decay
and the head kind (ridge, DEX, their blend). The chosen configuration is then refitted on train + val (more faces,
same hyperparameters) and measured once on test. The spread factor is calibrated on validation predictions of the
train-only fit (the refit would see those faces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.scoring.beauty.dataset import BeautyLabels
from services.scoring.beauty.features import ARCFACE, ARCFACE_BLOCK, EMBEDDING, EMBEDDING_BLOCK, stack_blocks
from services.scoring.beauty.head import (
    SCORE_MAX,
    SCORE_MIN,
    BeautyHead,
    Standardizer,
    calibrate_spread,
    centred_svd,
    dex_predict,
    fit_dex,
    ridge_path,
    soft_labels,
)

_CC0_AGE, _CC0_GENDER, _WRN = "agegender_cc0_age", "agegender_cc0_gender", "wrn16_8_imdbwiki"
BLOCK_SETS: dict[str, list[str]] = {
    # commercial-safe backbone: only the CC0 members' activations (the heads of 2026-11 and before)
    "cc0_members": [f"{_CC0_AGE}.final_gap", f"{_CC0_AGE}.final_grid", f"{_CC0_AGE}.stage2_gap",
                    f"{_CC0_AGE}.age_probs", f"{_CC0_GENDER}.conv_gap", f"{_CC0_GENDER}.conv_grid",
                    f"{_CC0_GENDER}.fc1", f"{_CC0_GENDER}.p_female"],
}
BLOCK_SETS["all_members"] = [*BLOCK_SETS["cc0_members"], f"{_WRN}.final_gap", f"{_WRN}.final_grid",
                             f"{_WRN}.stage2_gap", f"{_WRN}.age_probs", f"{_WRN}.p_female"]
# the committed heads: the dlib face embedding (CC0) first, then the member blocks (cc0: still commercial-safe)
BLOCK_SETS["cc0_v2"] = [EMBEDDING_BLOCK, *BLOCK_SETS["cc0_members"]]  # the committed heads of version 2
BLOCK_SETS["all_v2"] = [EMBEDDING_BLOCK, *BLOCK_SETS["all_members"]]
# version 3: both face embeddings with their last feature maps, plus the members' own answers (age distribution,
# P(female)); the members' activations no longer help once the maps are in (beauty.md, v3: 5-fold CV on train + val)
_DLIB_MAPS = [EMBEDDING_BLOCK, f"{EMBEDDING}.block13_gap", f"{EMBEDDING}.block13_grid"]
_OUTPUTS = [b for b in BLOCK_SETS["all_members"] if b.endswith((".p_female", ".age_probs"))]
BLOCK_SETS["all"] = [ARCFACE_BLOCK, f"{ARCFACE}.final_gap", f"{ARCFACE}.final_grid", *_DLIB_MAPS, *_OUTPUTS]
BLOCK_SETS["cc0"] = [*_DLIB_MAPS, *BLOCK_SETS["cc0_members"]]  # commercial-safe backbone (no ArcFace, no WRN)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 31))
DEX_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)
DEX_COMPONENTS = 256  # DEX head on the top principal components: 1.7 k faces cannot support 4.7 k × 19 free weights
DEX_LABEL_SIGMA = 0.75  # label-distribution width (score points): about half the raters' spread around a face's mean


@dataclass(frozen=True)
class Candidate:
    """One configuration scored on validation."""

    kind: str
    balance: bool
    alpha: float
    weight_decay: float
    val: dict[str, float]


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pearson r, MAE and RMSE (the figures FBP papers report)."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return {"pearson": float(np.corrcoef(pred, true)[0, 1]), "mae": float(np.mean(np.abs(pred - true))),
            "rmse": float(np.sqrt(np.mean((pred - true) ** 2))), "n": len(true)}


def _dex_fit(x: np.ndarray, y: np.ndarray, weight_decay: float, vt: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """DEX weights in the full standardized space (PCA projection folded in, so inference is one matmul)."""
    if vt is None:
        vt = centred_svd(x)[2]
    basis = vt[:DEX_COMPONENTS].T
    w, b = fit_dex(x @ basis, soft_labels(y, DEX_LABEL_SIGMA), weight_decay)
    return basis @ w, b


def _fit(x: np.ndarray, y: np.ndarray, sizes: Sequence[int], balance: bool, alpha: float, weight_decay: float,
         kind: str, blocks: list[str]) -> BeautyHead:
    std = Standardizer.fit(x, sizes, balance)
    xs = std(x)
    svd = centred_svd(xs)
    (w, b), = ridge_path(xs, y, [alpha], svd)
    dex_w, dex_b = _dex_fit(xs, y, weight_decay, svd[2]) if kind != "ridge" else (np.zeros((0, 0)), np.zeros(0))
    return BeautyHead(kind, blocks, std, w, b, dex_w, dex_b, 1.0)


def train_beauty_head(
    features: dict[str, np.ndarray],
    labels: BeautyLabels,
    block_set: str = "all",
    progress: bool = True,
) -> tuple[BeautyHead, dict]:
    """Select on val, refit on train + val, report test. ``features`` rows follow ``labels.files``."""
    from tqdm import tqdm

    blocks = BLOCK_SETS[block_set]
    x = stack_blocks(features, blocks)
    sizes = [features[b].shape[1] for b in blocks]
    y = labels.score
    tr, va, te = (labels.split == s for s in ("train", "val", "test"))
    candidates: list[Candidate] = []
    steps = [(bal, wd) for bal in (False, True) for wd in DEX_WEIGHT_DECAYS]
    svds: dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for balance, wd in tqdm(steps, desc=f"select ({block_set})", unit="cfg", disable=not progress):
        std = Standardizer.fit(x[tr], sizes, balance)
        xtr, xva = std(x[tr]), std(x[va])
        if balance not in svds:
            svds[balance] = centred_svd(xtr)
            for alpha, (w, b) in zip(RIDGE_ALPHAS, ridge_path(xtr, y[tr], RIDGE_ALPHAS, svds[balance]), strict=True):
                candidates.append(Candidate("ridge", balance, alpha, 0.0, regression_metrics(xva @ w + b, y[va])))
        dex_w, dex_b = _dex_fit(xtr, y[tr], wd, svds[balance][2])
        dex_val, _ = dex_predict(xva, dex_w, dex_b)
        candidates.append(Candidate("dex", balance, 0.0, wd, regression_metrics(dex_val, y[va])))
    best_ridge = max((c for c in candidates if c.kind == "ridge"), key=lambda c: c.val["pearson"])
    best_dex = max((c for c in candidates if c.kind == "dex"), key=lambda c: c.val["pearson"])
    # blend: both heads on the best ridge's standardisation, DEX with its best weight decay
    head_tr = _fit(x[tr], y[tr], sizes, best_ridge.balance, best_ridge.alpha, best_dex.weight_decay, "blend", blocks)
    blend_val, _ = head_tr.predict(x[va])
    blend = Candidate("blend", best_ridge.balance, best_ridge.alpha, best_dex.weight_decay,
                      regression_metrics(blend_val, y[va]))
    chosen = max((best_ridge, best_dex, blend), key=lambda c: c.val["pearson"])
    head_tr = _fit(x[tr], y[tr], sizes, chosen.balance, chosen.alpha, chosen.weight_decay, chosen.kind, blocks)
    pred_va, raw_va = head_tr.predict(x[va])
    head_tr.spread_factor = calibrate_spread(np.abs(pred_va - y[va]), raw_va / head_tr.spread_factor)
    test_train_only = regression_metrics(head_tr.predict(x[te])[0], y[te])
    both = tr | va
    head = _fit(x[both], y[both], sizes, chosen.balance, chosen.alpha, chosen.weight_decay, chosen.kind, blocks)
    head.spread_factor = head_tr.spread_factor
    pred_te, spread_te = head.predict(x[te])
    report = {
        "block_set": block_set, "feature_dim": int(x.shape[1]), "blocks": blocks,
        "n": {"train": int(tr.sum()), "val": int(va.sum()), "test": int(te.sum())},
        "val": {"ridge": best_ridge.__dict__, "dex": best_dex.__dict__, "blend": blend.__dict__},
        "chosen": {"kind": chosen.kind, "balance": chosen.balance, "alpha": chosen.alpha,
                   "weight_decay": chosen.weight_decay},
        "test": regression_metrics(pred_te, y[te]),
        "test_vs_published_mean": regression_metrics(pred_te, labels.published_mean[te]),
        "test_train_only_fit": test_train_only,
        "test_spread_coverage": float(np.mean(np.abs(pred_te - y[te]) <= spread_te)),
        "spread_factor": head.spread_factor, "score_range": [SCORE_MIN, SCORE_MAX],
    }
    head.meta = {"block_set": block_set, "chosen": report["chosen"], "test": report["test"]}
    return head, report
