"""``evaluate_beauty``: train-and-measure (or measure a committed head) on MEBeauty's official test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.scoring.beauty.cache import DEFAULT_CACHE_DIR, cached_features
from services.scoring.beauty.dataset import load_mebeauty
from services.scoring.beauty.features import stack_blocks
from services.scoring.beauty.scorer import FLIP_BY_MEMBER, load_beauty_head
from services.scoring.beauty.train import BLOCK_SETS, regression_metrics, train_beauty_head

# Published MEBeauty figures (different splits/protocols: context, not a like-for-like comparison).
PUBLISHED = {
    "Ugail et al. (CNN ensemble + EMD), papers-with-code SOTA": {"pearson": 0.795, "mae": 0.616, "rmse": 0.794},
}


def mebeauty_features(dataset_dir: Path, files: list[str], block_set: str, cache_dir: Path = DEFAULT_CACHE_DIR,
                      progress: bool = True) -> dict[str, np.ndarray]:
    """Cached blocks for the given (deduplicated) files."""
    members = sorted({b.split(".", 1)[0] for b in BLOCK_SETS[block_set]})
    return cached_features("mebeauty", Path(dataset_dir) / "images", files, members, FLIP_BY_MEMBER, cache_dir,
                           progress=progress)


def evaluate_beauty(
    dataset_dir: Path, block_set: str = "all", head_name: str | None = None, cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> dict:
    """With ``head_name``: the committed head's test metrics; without: train (CV on train + val) and report."""
    labels = load_mebeauty(Path(dataset_dir))
    if head_name:
        head, card = load_beauty_head(head_name)
        block_set = head.meta.get("block_set", block_set)
    all_files = mebeauty_files(Path(dataset_dir))
    blocks = mebeauty_features(Path(dataset_dir), all_files, block_set, cache_dir, progress)
    index = {f: i for i, f in enumerate(all_files)}
    rows = np.array([index[f] for f in labels.files])
    features = {k: v[rows] for k, v in blocks.items()}
    if not head_name:
        _, report = train_beauty_head(features, labels, block_set, progress)
        return report
    test = labels.split == "test"
    pred, spread = head.predict(stack_blocks(features, head.blocks))
    return {"head": head_name, "card_version": card.version, "test": regression_metrics(pred[test], labels.score[test]),
            "test_spread_coverage": float(np.mean(np.abs(pred[test] - labels.score[test]) <= spread[test]))}


def mebeauty_files(dataset_dir: Path) -> list[str]:
    """Every image in a data set's labels.csv, in file order (the feature cache is keyed by this list)."""
    import csv

    with (dataset_dir / "labels.csv").open(newline="", encoding="utf-8-sig") as fh:
        return [row["file"] for row in csv.DictReader(fh)]
