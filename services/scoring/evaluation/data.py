"""Labelled folders (``images/`` + ``labels.csv``) and the deterministic train/held-out split of a data set.

Why a hash split: it depends only on the file name, so it is stable across machines, subsets and file order, and a
file never moves between portions when images are added. The split used for fitting calibration and heads is
``split_portion(file) == "train"`` (``TRAIN_PERCENT`` of files), everything else is held out.
"""

from __future__ import annotations

import csv
import hashlib
import math
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


class DatasetError(ValueError):
    """A labelled folder that cannot be used as given; the message names the file, row or column to fix."""


GENDER_WORDS = {"f": 1.0, "female": 1.0, "w": 1.0, "woman": 1.0, "m": 0.0, "male": 0.0, "man": 0.0}


def _optional_float(row: dict[str, str], column: str, where: str) -> float | None:
    """The cell as a number; blank or NaN (a spreadsheet's empty cell) is None, anything else not numeric an error."""
    value = (row.get(column) or "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(f"{where}: column {column!r} holds {value!r}, not a number") from None
    return None if math.isnan(number) else number


def _gender(row: dict[str, str], where: str) -> float | None:
    """1 = female, 0 = male: 0/1 as documented, or the words F/M, female/male (any case)."""
    word = (row.get("gender") or "").strip().lower()
    if word in GENDER_WORDS:
        return GENDER_WORDS[word]
    try:
        return _optional_float(row, "gender", where)
    except DatasetError:
        raise DatasetError(f"{where}: gender {row['gender']!r} is none of 0/1 (1 = female), F/M, female/male") \
            from None


def read_age_samples(folder: Path, target: str = "age", portion: str = "all") -> list[AgeSample]:
    """Rows of ``folder/labels.csv`` with a value for ``target`` (rows without one are skipped), in file order.

    ``portion`` is ``all``, ``train`` or ``heldout`` (the hash split).
    """
    folder = Path(folder)
    if target not in TARGET_COLUMNS:
        raise ValueError(f"unknown target {target!r}; known: {sorted(TARGET_COLUMNS)}")
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise DatasetError(f"{labels} not found: a data-set folder holds images/ and labels.csv")
    # utf-8-sig: a spreadsheet's byte-order mark would otherwise become part of the first column's name
    with labels.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if FILE_COLUMN not in columns:
        raise DatasetError(f"{labels} has no {FILE_COLUMN!r} column (columns: {columns})")
    age_column = next((c for c in TARGET_COLUMNS[target] if c in columns), None)
    if age_column is None:
        raise DatasetError(f"{labels} has none of {TARGET_COLUMNS[target]} (columns: {columns})")
    samples = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{labels} line {line}"
        age = _optional_float(row, age_column, where)
        if age is None:
            continue
        if not (row.get(FILE_COLUMN) or "").strip():
            raise DatasetError(f"{where}: a label without a file name")
        if portion != "all" and split_portion(row[FILE_COLUMN]) != portion:
            continue
        race = row.get("race") or row.get("ethnicity") or None
        # the ε-error's σ is the spread of the APPARENT-age votes: meaningless against a real age
        std = None if target == "real_age" else _optional_float(row, "apparent_age_std", where)
        samples.append(AgeSample(row[FILE_COLUMN], folder / "images" / row[FILE_COLUMN], age,
                                 _gender(row, where), std, race))
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
