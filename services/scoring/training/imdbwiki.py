"""IMDB-WIKI metadata (``imdb.mat`` / ``wiki.mat``, Rothe et al.) → labelled face boxes with real ages.

The .mat holds one MATLAB struct (``imdb`` or ``wiki``) of parallel 1×N arrays: ``dob`` (MATLAB serial date number),
``photo_taken`` (year), ``full_path`` (cell of relative paths), ``gender`` (0 female, 1 male, NaN unknown),
``face_location`` (cell of [x1 y1 x2 y2]), ``face_score`` (−inf: no face), ``second_face_score`` (NaN: no second
face). The age follows yu4u/age-gender-estimation (the WRN member's training code): the photo is assumed taken in
the middle of ``photo_taken``, so people born in the second half of the year have not had that year's birthday.
Filters follow the same code: a confident single face and an age in 0..100 (IMDB-WIKI's labels are noisy: dob and
photo year are scraped).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

MATLAB_EPOCH_OFFSET = 366  # MATLAB datenum 1 = 0000-01-01; Python's ordinal 1 = 0001-01-01
MIN_FACE_SCORE = 1.0  # yu4u's default: below this the detector's box is often not the celebrity's face
MAX_AGE = 100
MID_YEAR_MONTH = 7  # photos assumed taken on July 1st of photo_taken


@dataclass(frozen=True)
class ImdbWikiFace:
    """One usable IMDB-WIKI photo: path relative to the data root, face box, real age, 1 = female."""

    path: str
    box: tuple[float, float, float, float]
    age: int
    female: float | None
    face_score: float


def age_from_dob(dob: float, photo_taken: int) -> int:
    """Age at the photo from a MATLAB datenum of birth (yu4u's ``calc_age``)."""
    birth = date.fromordinal(max(int(dob) - MATLAB_EPOCH_OFFSET, 1))
    return int(photo_taken - birth.year - (0 if birth.month < MID_YEAR_MONTH else 1))


def _string(cell: object) -> str:
    value = np.asarray(cell).reshape(-1)
    return str(value[0]) if value.size else ""


def read_imdbwiki(mat_path: Path, min_face_score: float = MIN_FACE_SCORE) -> list[ImdbWikiFace]:
    """Usable faces of an IMDB-WIKI .mat (``scipy.io.loadmat``; the struct's name is taken from the file)."""
    from scipy.io import loadmat

    meta = loadmat(str(mat_path))
    keys = [k for k in meta if not k.startswith("__")]
    if len(keys) != 1:
        raise ValueError(f"{mat_path}: expected one struct (imdb or wiki), found {keys}")
    struct = meta[keys[0]][0, 0]
    dob = struct["dob"].reshape(-1).astype(np.float64)
    taken = struct["photo_taken"].reshape(-1).astype(np.int64)
    paths = struct["full_path"].reshape(-1)
    gender = struct["gender"].reshape(-1).astype(np.float64)
    boxes = struct["face_location"].reshape(-1)
    score = struct["face_score"].reshape(-1).astype(np.float64)
    second = struct["second_face_score"].reshape(-1).astype(np.float64)
    faces = []
    for i in range(len(dob)):
        if not np.isfinite(score[i]) or score[i] < min_face_score or not np.isnan(second[i]):
            continue
        try:
            age = age_from_dob(dob[i], int(taken[i]))
        except (ValueError, OverflowError):  # dob 0 or garbage in the scraped metadata
            continue
        if not 0 <= age <= MAX_AGE:
            continue
        box = np.asarray(boxes[i], dtype=np.float64).reshape(-1)
        female = None if np.isnan(gender[i]) else float(1.0 - gender[i])  # IMDB-WIKI: 1 = male; ours: 1 = female
        faces.append(ImdbWikiFace(_string(paths[i]), (box[0], box[1], box[2], box[3]), age, female, float(score[i])))
    return faces
