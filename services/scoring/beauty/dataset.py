"""MEBeauty as used for training: labels, byte-identical duplicates merged, the official 2022 split kept leak-free.

The data set lists 39 groups of byte-identical images; 18 of them straddle the official train/val/test split, and
their scores differ (the same picture was rated by different people). Keeping both copies would leak test images into
training, so each group becomes ONE face: the first file of the group, with the rating-count-weighted mean score, in
the most held-out split any copy was in (test > val > train; the test set must not shrink to favour us).
Images without an official split (10) are left out of the supervised figures.

Training target: a face's mean rating depends on which ~25 of the 360 raters happened to see it, and raters differ
in leniency. ``rater_adjusted_scores`` removes each rater's offset (rating = face score + rater offset + noise,
fitted on train + val ratings only) and the heads learn that cleaner score; every figure is still measured against
the official score (5-fold CV r 0.7613 → 0.7630 with the same ridge, benchmarks/results/beauty.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # a merged group goes to its most held-out copy's split
TARGET_COLUMN = "split_2022_score"  # the score in the official 2022 split files (r = 0.996 with mean_score_1to10)
RATER_SHRINKAGE = 5.0  # ratings' worth of prior pulling a rater's offset towards 0 (figures flat from 0 to 20)
RATER_ITERATIONS = 30  # alternating least squares: face scores given offsets, offsets given scores
FIT_SPLITS = ("train", "val")


@dataclass(frozen=True)
class BeautyLabels:
    """One row per unique face (duplicates merged); ``files`` index the image folder, ``alias`` maps copies."""

    files: list[str]
    score: np.ndarray  # [N] target on 1..10
    published_mean: np.ndarray  # [N] mean_score_1to10 (also reported)
    split: np.ndarray  # [N] 'train' | 'val' | 'test' | ''
    gender: np.ndarray  # [N] 0 male, 1 female
    alias: dict[str, str]  # every file (including dropped copies) → the file that represents it
    train_score: np.ndarray | None = None  # [N] what heads learn (rater-adjusted on train + val); None: ``score``

    @property
    def fit_target(self) -> np.ndarray:
        return self.score if self.train_score is None else self.train_score


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
    split_arr, score_arr = np.array(split), np.array(score)
    train_score = None
    if (dataset_dir / "ratings_long.csv").exists():
        fit_rows = np.isin(split_arr, FIT_SPLITS)
        adjusted = rater_adjusted_scores(dataset_dir / "ratings_long.csv", files, alias, fit_rows)
        train_score = np.where(fit_rows & np.isfinite(adjusted), adjusted, score_arr)
    return BeautyLabels(files, score_arr, np.array(published), split_arr, np.array(gender), alias, train_score)


def rater_adjusted_scores(ratings_csv: Path, files: list[str], alias: dict[str, str], use: np.ndarray) -> np.ndarray:
    """Per face the mean rating with each rater's leniency removed; NaN outside ``use`` or without ratings.

    Only ratings of faces in ``use`` enter the fit, so a held-out face's ratings never shape a training target.
    """
    position = {f: i for i, f in enumerate(files)}
    faces, raters, ratings = [], [], []
    rater_ids: dict[str, int] = {}
    with Path(ratings_csv).open(newline="") as fh:
        for row in csv.DictReader(fh):
            face = position.get(alias.get(row["image"], ""), -1)
            if face >= 0 and use[face]:
                faces.append(face)
                raters.append(rater_ids.setdefault(row["rater_id"], len(rater_ids)))
                ratings.append(float(row["rating"]))
    face, rater, rating = np.array(faces, int), np.array(raters, int), np.array(ratings)
    n, m = len(files), len(rater_ids)
    count = np.bincount(face, minlength=n).astype(float)
    score = np.bincount(face, rating, n) / np.maximum(count, 1)
    for _ in range(RATER_ITERATIONS):
        offset = np.bincount(rater, rating - score[face], m) / (np.bincount(rater, minlength=m) + RATER_SHRINKAGE)
        score = np.bincount(face, rating - offset[rater], n) / np.maximum(count, 1)
    return np.where(count > 0, score, np.nan)
