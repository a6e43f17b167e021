"""MEBeauty as used for training: labels, byte-identical duplicates merged, the official 2022 split kept leak-free.

The data set lists 39 groups of byte-identical images; 18 of them straddle the official train/val/test split, and
their scores differ (the same picture was rated by different people). Keeping both copies would leak test images into
training, so each group becomes ONE face: the first file of the group, with the rating-count-weighted mean score, in
the most held-out split any copy was in (test > val > train; the test set must not shrink to favour us).
Images without an official split (10) are left out of the supervised figures.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # a merged group goes to its most held-out copy's split
TARGET_COLUMN = "split_2022_score"  # the score in the official 2022 split files (r = 0.996 with mean_score_1to10)


@dataclass(frozen=True)
class BeautyLabels:
    """One row per unique face (duplicates merged); ``files`` index the image folder, ``alias`` maps copies."""

    files: list[str]
    score: np.ndarray  # [N] target on 1..10
    published_mean: np.ndarray  # [N] mean_score_1to10 (also reported)
    split: np.ndarray  # [N] 'train' | 'val' | 'test' | ''
    gender: np.ndarray  # [N] 0 male, 1 female
    alias: dict[str, str]  # every file (including dropped copies) → the file that represents it


def read_duplicate_groups(path: Path) -> list[list[str]]:
    """Groups of byte-identical files, one group per line, names separated by '|'."""
    groups = []
    for line in Path(path).read_text().splitlines():
        names = [name.strip() for name in line.split("|") if name.strip()]
        if len(names) > 1:
            groups.append(names)
    return groups


def load_mebeauty(dataset_dir: Path) -> BeautyLabels:
    """Labels with duplicate groups merged (see module docstring)."""
    dataset_dir = Path(dataset_dir)
    with (dataset_dir / "labels.csv").open(newline="") as fh:
        rows = {row["file"]: row for row in csv.DictReader(fh)}
    alias = {name: name for name in rows}
    for group in read_duplicate_groups(dataset_dir / "exact_duplicate_images.txt"):
        group = [g for g in group if g in rows]
        for name in group[1:]:
            alias[name] = group[0]
    members: dict[str, list[dict[str, str]]] = {}
    for name, row in rows.items():
        members.setdefault(alias[name], []).append(row)
    files, score, published, split, gender = [], [], [], [], []
    for keep, group_rows in members.items():
        weights = np.array([max(float(r["n_ratings"] or 1), 1.0) for r in group_rows])
        splits = [r["split_2022"] for r in group_rows if r["split_2022"]]
        target = [float(r[TARGET_COLUMN] or r["mean_score_1to10"]) for r in group_rows]
        files.append(keep)
        score.append(float(np.average(target, weights=weights)))
        published.append(float(np.average([float(r["mean_score_1to10"]) for r in group_rows], weights=weights)))
        split.append(min(splits, key=SPLIT_PRIORITY.__getitem__) if splits else "")
        gender.append(int(group_rows[0]["gender"]))
    return BeautyLabels(files, np.array(score), np.array(published), np.array(split), np.array(gender), alias)
