"""Compare attractiveness feature block sets by 5-fold cross-validation on MEBeauty train + val (ridge heads).

    PYTHONPATH=. .venv/bin/python benchmarks/beauty_blocks_cv.py [--block-sets all cc0 all_v2 cc0_v2 ...]

Why: the official validation split has 221 faces; block sets whose validation Pearson differ by 0.01 are not
distinguishable on it. Five folds over the 1,941 train + val faces rank them with ~9× the data. Per set: the ridge
alpha and block balancing with the best out-of-fold Pearson (ridges fitted on the rater-adjusted score, judged on
the official one, as ``beauty_train.py`` does), then (for reference only: the test split never
selects anything) the test Pearson / MAE of that ridge refitted on train + val. Features come from the cache that
``beauty_train.py`` uses (missing blocks are computed through the served feature code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.beauty.dataset import FIT_SPLITS, load_mebeauty  # noqa: E402
from services.scoring.beauty.evaluate import mebeauty_features, mebeauty_files  # noqa: E402
from services.scoring.beauty.features import stack_blocks  # noqa: E402
from services.scoring.beauty.head import Standardizer, centred_svd, ridge_path  # noqa: E402
from services.scoring.beauty.train import BLOCK_SETS, CV_FOLDS, out_of_fold, regression_metrics  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402


def cv_ridge(x: np.ndarray, target: np.ndarray, score: np.ndarray, sizes: list[int], fold: np.ndarray
             ) -> tuple[float, float, bool]:
    """(best out-of-fold Pearson against ``score``, its alpha, its balancing) over RIDGE_ALPHAS × {plain, balanced},
    ridges fitted on ``target``: as ``train_beauty_head`` fits and judges."""
    oof = out_of_fold(x, target, sizes, fold, dex=False)
    (_, balance, alpha), pred = max(oof.items(), key=lambda item: np.corrcoef(item[1], score)[0, 1])
    return float(np.corrcoef(pred, score)[0, 1]), alpha, balance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--block-sets", nargs="+", default=["all_v2", "cc0_v2", "all", "cc0"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # only where the landmark cache misses
    torch.set_num_threads(2)
    folder = args.data / "mebeauty"
    labels = load_mebeauty(folder)
    files = mebeauty_files(folder)
    index = [dict(zip(files, range(len(files)), strict=True))[f] for f in labels.files]
    fit = np.isin(labels.split, FIT_SPLITS)
    test = labels.split == "test"
    fold = np.random.default_rng(args.seed).permutation(int(fit.sum())) % CV_FOLDS
    print(f"{'block set':<12} {'dims':>6} {'CV r':>7} {'alpha':>8} {'balanced':>8} | test r / MAE (reference)")
    for name in args.block_sets:
        blocks = {k: v[index] for k, v in mebeauty_features(folder, files, name).items()}
        x = stack_blocks(blocks, BLOCK_SETS[name])
        sizes = [blocks[b].shape[1] for b in BLOCK_SETS[name]]
        r, alpha, balance = cv_ridge(x[fit], labels.fit_target[fit], labels.score[fit], sizes, fold)
        std = Standardizer.fit(x[fit], sizes, balance)
        xs = std(x[fit])
        (w, b), = ridge_path(xs, labels.fit_target[fit], [alpha], centred_svd(xs))
        t = regression_metrics(std(x[test]) @ w + b, labels.score[test])
        print(f"{name:<12} {x.shape[1]:>6} {r:>7.4f} {alpha:>8.0f} {balance!s:>8} | "
              f"{t['pearson']:.4f} / {t['mae']:.3f}", flush=True)


if __name__ == "__main__":
    main()
