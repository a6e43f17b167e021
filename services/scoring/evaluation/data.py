"""Labelled folders (``images/`` + ``labels.csv``) and the deterministic train/held-out split of a data set.

Why a hash split: it depends only on the file name, so it is stable across machines, subsets and file order, and a
file never moves between portions when images are added. The split used for fitting calibration and heads is
``split_portion(file) == "train"`` (``TRAIN_PERCENT`` of files), everything else is held out.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

FILE_COLUMN = "file"
TRAIN_PERCENT = 70  # 70/30: enough held-out faces per age band (≥ 150 per band on UTKFace) for a stable MAE
SPLIT_SALT = "howhot-age-split-v1"  # changing it reshuffles every split; bump only with a documented reason
TARGET_COLUMNS = {  # --target → candidate column names in labels.csv, first present wins
    "age": ("age",),
    "real_age": ("real_age", "age"),
    "apparent_age": ("apparent_age", "apparent_age_mean", "age"),
}


@dataclass(frozen=True)
class AgeSample:
    """One labelled image: its target age and the optional labels the metrics can break down by."""

    file: str
    path: Path
    age: float
    female: float | None = None  # 1 = female, 0 = male, None = unknown
    age_std: float | None = None  # apparent-age standard deviation (ChaLearn LAP style), enables the ε-error
    race: str | None = None


def split_portion(file_name: str, train_percent: int = TRAIN_PERCENT) -> str:
    """``"train"`` or ``"heldout"`` from a salted SHA-1 of the file name (deterministic, order-free)."""
    digest = hashlib.sha1(f"{SPLIT_SALT}:{file_name}".encode(), usedforsecurity=False).digest()
    return "train" if int.from_bytes(digest[:4], "big") % 100 < train_percent else "heldout"


def _optional_float(row: dict[str, str], column: str) -> float | None:
    value = row.get(column)
    return float(value) if value not in (None, "") else None


def read_age_samples(folder: Path, target: str = "age", portion: str = "all") -> list[AgeSample]:
    """Rows of ``folder/labels.csv`` with a value for ``target`` (rows without one are skipped), in file order.

    ``portion`` is ``all``, ``train`` or ``heldout`` (the hash split).
    """
    folder = Path(folder)
    if target not in TARGET_COLUMNS:
        raise ValueError(f"unknown target {target!r}; known: {sorted(TARGET_COLUMNS)}")
    with (folder / "labels.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    age_column = next((c for c in TARGET_COLUMNS[target] if c in columns), None)
    if age_column is None:
        raise ValueError(f"{folder / 'labels.csv'} has none of {TARGET_COLUMNS[target]} (columns: {columns})")
    samples = []
    for row in rows:
        age = _optional_float(row, age_column)
        if age is None:
            continue
        if portion != "all" and split_portion(row[FILE_COLUMN]) != portion:
            continue
        race = row.get("race") or row.get("ethnicity") or None
        samples.append(AgeSample(row[FILE_COLUMN], folder / "images" / row[FILE_COLUMN], age,
                                 _optional_float(row, "gender"), _optional_float(row, "apparent_age_std"), race))
    return samples


def subsample(samples: list[AgeSample], limit: int | None) -> list[AgeSample]:
    """At most ``limit`` samples, chosen by a salted hash of the file name (a repeatable, order-free random sample
    that is nested: a larger limit keeps every file of a smaller one, so cached work is reused)."""
    if limit is None or limit >= len(samples):
        return list(samples)

    def key(sample: AgeSample) -> bytes:
        return hashlib.sha1(f"{SPLIT_SALT}:sample:{sample.file}".encode(), usedforsecurity=False).digest()

    chosen = {s.file for s in sorted(samples, key=key)[:limit]}
    return [s for s in samples if s.file in chosen]
