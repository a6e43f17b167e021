"""Rating data sets as a [raters × faces] matrix (NaN = not rated), with rater demographics where known.

FRL London is a full matrix (2,513 raters × 102 faces, 1–7) with raters.csv; MEBeauty is sparse (360 raters,
~25 ratings per face, 1–10), and its byte-identical images are merged into one face (a rater who saw both copies
counts once, with the mean), exactly as for the global head.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.scoring.personalize.prior import demographics_matrix

SCALES = {"frl_london": (1.0, 7.0), "mebeauty": (1.0, 10.0)}


@dataclass(frozen=True)
class RatingsData:
    """Ratings matrix, who and what its rows/columns are, the rating scale and optional demographics."""

    name: str
    raters: list[str]
    faces: list[str]  # image file names (column order)
    ratings: np.ndarray  # [U, I] float, NaN = missing
    scale: tuple[float, float]
    demographics: np.ndarray | None  # [U, Ddemo] or None


def _age(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def load_ratings(dataset_dir: Path) -> RatingsData:
    """Read ``ratings_long.csv`` (and ``raters.csv`` if present) of FRL London or MEBeauty."""
    dataset_dir = Path(dataset_dir)
    name = dataset_dir.name
    alias: dict[str, str] = {}
    if name == "mebeauty":
        from services.scoring.beauty.dataset import load_mebeauty

        labels = load_mebeauty(dataset_dir)
        alias, faces = labels.alias, list(labels.files)
    else:
        with (dataset_dir / "labels.csv").open(newline="", encoding="utf-8-sig") as fh:
            faces = [row["file"] for row in csv.DictReader(fh)]
    face_index = {f: i for i, f in enumerate(faces)}
    rater_index: dict[str, int] = {}
    cells: dict[tuple[int, int], list[float]] = {}
    with (dataset_dir / "ratings_long.csv").open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            face = alias.get(row["image"], row["image"])
            if face not in face_index:
                continue
            u = rater_index.setdefault(row["rater_id"], len(rater_index))
            cells.setdefault((u, face_index[face]), []).append(float(row["rating"]))
    matrix = np.full((len(rater_index), len(faces)), np.nan)
    for (u, i), values in cells.items():
        matrix[u, i] = float(np.mean(values))
    raters = list(rater_index)
    demographics = None
    raters_csv = dataset_dir / "raters.csv"
    if raters_csv.exists():
        with raters_csv.open(newline="", encoding="utf-8-sig") as fh:
            info = {r["rater_id"]: r for r in csv.DictReader(fh)}
        rows = [(info.get(r, {}).get("rater_sex") or None, _age(info.get(r, {}).get("rater_age", "")),
                 info.get(r, {}).get("rater_sexpref") or None) for r in raters]
        demographics = demographics_matrix(rows)
    return RatingsData(name, raters, faces, matrix, SCALES.get(name, (1.0, 10.0)), demographics)
