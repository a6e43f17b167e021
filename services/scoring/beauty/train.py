"""Training the attractiveness head on cached member features (MEBeauty, official 2022 split, duplicates merged).

Model selection is 5-fold cross-validation on train + val (block balancing, ridge alpha, DEX weight decay and the
head kind: ridge, DEX or their blend; block sets are compared the same way by benchmarks/beauty_blocks_cv.py). The
chosen configuration is refitted on train + val and measured once on test. The spread factor is calibrated on the
out-of-fold predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scoring.beauty.dataset import FIT_SPLITS, BeautyLabels
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
CV_FOLDS = 5  # folds over train + val for every selection (the official val split alone is too small)
DEX_LABEL_SIGMA = 0.75  # label-distribution width (score points): about half the raters' spread around a face's mean


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


def out_of_fold(x: np.ndarray, y: np.ndarray, sizes: Sequence[int], fold: np.ndarray, progress: bool = False,
                label: str = "", dex: bool = True) -> dict[tuple, np.ndarray]:
    """Out-of-fold predictions of every candidate (fold k predicted by a fit on the other folds) on the rows of ``x``.

    Keys: ('ridge', balance, alpha) → [N] scores; with ``dex``, ('dex', balance, weight_decay) → [2, N] (score, std).
    """
    from tqdm import tqdm

    folds = int(fold.max()) + 1
    out: dict[tuple, np.ndarray] = {}
    steps = [(balance, k) for balance in (False, True) for k in range(folds)]
    for balance, k in tqdm(steps, desc=f"select ({label}, {folds}-fold CV)", unit="fold", disable=not progress):
        fit, held = fold != k, fold == k
        std = Standardizer.fit(x[fit], sizes, balance)
        xf, xh = std(x[fit]), std(x[held])
        svd = centred_svd(xf)
        for alpha, (w, b) in zip(RIDGE_ALPHAS, ridge_path(xf, y[fit], RIDGE_ALPHAS, svd), strict=True):
            out.setdefault(("ridge", balance, alpha), np.zeros(len(y)))[held] = xh @ w + b
        for wd in DEX_WEIGHT_DECAYS if dex else ():
            dex_w, dex_b = _dex_fit(xf, y[fit], wd, svd[2])
            out.setdefault(("dex", balance, wd), np.zeros((2, len(y))))[:, held] = dex_predict(xh, dex_w, dex_b)
    return out


def train_beauty_head(
    features: dict[str, np.ndarray],
    labels: BeautyLabels,
    block_set: str = "all",
    progress: bool = True,
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> tuple[BeautyHead, dict]:
    """Select by cross-validation on train + val, refit on train + val, report test. Rows follow ``labels.files``.

    Heads learn ``labels.fit_target`` (the rater-adjusted score where the data set has per-rater ratings); every
    selection and figure is against ``labels.score``, the official target.

    Why not the official validation split: its 221 faces cannot tell configurations 0.01 apart (and it is harder
    than test: r ~0.08 lower), while five folds over the 1,941 train + val faces score every candidate on all of
    them. The spread factor is calibrated on the same out-of-fold predictions.
    """
    blocks = BLOCK_SETS[block_set]
    x = stack_blocks(features, blocks)
    sizes = [features[b].shape[1] for b in blocks]
    y = labels.score
    both = np.isin(labels.split, FIT_SPLITS)
    te = labels.split == "test"
    xb, yb, target = x[both], y[both], labels.fit_target[both]  # fitted on the target, judged on the score
    fold = np.random.default_rng(seed).permutation(len(yb)) % folds
    oof = out_of_fold(xb, target, sizes, fold, progress, block_set)

    def pearson(pred: np.ndarray) -> float:
        return float(np.corrcoef(pred, yb)[0, 1])

    ridge_key = max((k for k in oof if k[0] == "ridge"), key=lambda k: pearson(oof[k]))
    dex_key = max((k for k in oof if k[0] == "dex"), key=lambda k: pearson(oof[k][0]))
    _, balance, alpha = ridge_key
    weight_decay = dex_key[2]
    blend_dex = oof[("dex", balance, weight_decay)]  # the blend shares the best ridge's standardisation
    cv_pred = {"ridge": (oof[ridge_key], np.ones(len(yb))), "dex": (oof[dex_key][0], oof[dex_key][1]),
               "blend": ((oof[ridge_key] + blend_dex[0]) / 2, blend_dex[1])}
    configs = {"ridge": (balance, alpha, 0.0), "dex": (dex_key[1], 0.0, weight_decay),
               "blend": (balance, alpha, weight_decay)}
    kind = max(cv_pred, key=lambda k: pearson(cv_pred[k][0]))
    chosen_balance, chosen_alpha, chosen_wd = configs[kind]
    pred_cv, raw_cv = cv_pred[kind]
    head = _fit(xb, target, sizes, chosen_balance, chosen_alpha, chosen_wd, kind, blocks)
    head.spread_factor = calibrate_spread(np.abs(np.clip(pred_cv, SCORE_MIN, SCORE_MAX) - yb), raw_cv)
    pred_te, spread_te = head.predict(x[te])
    report = {
        "block_set": block_set, "feature_dim": int(x.shape[1]), "blocks": blocks,
        "n": {"train": int((labels.split == "train").sum()), "val": int((labels.split == "val").sum()),
              "test": int(te.sum())},
        "selection": f"{folds}-fold cross-validation on train + val (seed {seed})",
        "fit_target": "score" if labels.train_score is None else "rater-adjusted score (train + val ratings)",
        "cv": {k: {"config": dict(zip(("balance", "alpha", "weight_decay"), configs[k], strict=True)),
                   **regression_metrics(np.clip(p, SCORE_MIN, SCORE_MAX), yb)} for k, (p, _) in cv_pred.items()},
        "chosen": {"kind": kind, "balance": chosen_balance, "alpha": chosen_alpha, "weight_decay": chosen_wd},
        "test": regression_metrics(pred_te, y[te]),
        "test_vs_published_mean": regression_metrics(pred_te, labels.published_mean[te]),
        "test_spread_coverage": float(np.mean(np.abs(pred_te - y[te]) <= spread_te)),
        "spread_factor": head.spread_factor, "score_range": [SCORE_MIN, SCORE_MAX],
    }
    head.meta = {"block_set": block_set, "chosen": report["chosen"], "test": report["test"]}
    return head, report
