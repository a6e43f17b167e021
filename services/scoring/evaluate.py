"""Measuring members and the ensemble on labelled faces: per-member and ensemble MAE, given chips.

``howhot`` CLI wiring comes later; these helpers are what it and the calibration script call. Data sets are read in
place from ``../shared/data`` (never copied into the repo). UTKFace is split deterministically by file name so that
calibration never sees the evaluation portion.
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.scoring.chipsource import chip_from_utkface

UTK_EVAL_BUCKETS = 5  # 1 of 5 crc32 buckets (20 %) is the evaluation portion, the other 80 % may be used to fit


def utk_is_eval(file_name: str) -> bool:
    """Deterministic, order-free split: the evaluation portion of UTKFace (never used for calibration)."""
    return zlib.crc32(file_name.encode()) % UTK_EVAL_BUCKETS == 0


@dataclass(frozen=True)
class LabelledFace:
    """One labelled image of a data set folder (images/ + labels.csv)."""

    path: Path
    age: float
    p_female_true: float | None  # 1 = female, 0 = male, None when the set has no gender label


def read_labels(folder: Path, age_column: str = "age") -> list[LabelledFace]:
    """Rows of ``folder/labels.csv`` (columns file, <age_column>, optional gender) with their image paths."""
    with (folder / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    faces = []
    for row in rows:
        if not row.get(age_column):
            continue
        gender = row.get("gender")
        faces.append(LabelledFace(folder / "images" / row["file"], float(row[age_column]),
                                  float(gender) if gender not in (None, "") else None))
    return faces


def utkface_chips(faces: Sequence[LabelledFace]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chips (and chip landmarks) for UTKFace aligned crops, built without a detector (see chipsource)."""
    for face in faces:
        yield chip_from_utkface(np.asarray(Image.open(face.path).convert("RGB")))


def mae(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error in years."""
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(true))))


def gender_accuracy(p_female: np.ndarray, true_female: np.ndarray) -> float:
    """Share of faces whose P(female) > 0.5 agrees with the label."""
    return float(np.mean((np.asarray(p_female) > 0.5) == (np.asarray(true_female) > 0.5)))
