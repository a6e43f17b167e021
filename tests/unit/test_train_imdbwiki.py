"""The IMDB-WIKI .mat reader on a tiny synthetic file written with scipy.io.savemat."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from services.scoring.training.imdbwiki import MATLAB_EPOCH_OFFSET, age_from_dob, read_imdbwiki


def _datenum(day: date) -> float:
    return float(day.toordinal() + MATLAB_EPOCH_OFFSET)


def _write(path: Path) -> None:
    n = 5
    paths = np.empty((1, n), dtype=object)
    boxes = np.empty((1, n), dtype=object)
    for i in range(n):
        paths[0, i] = np.array([f"{i:02d}/person_{i}.jpg"])
        boxes[0, i] = np.array([[10.0 + i, 20.0, 110.0, 130.0]])
    wiki = {
        "dob": np.array([[_datenum(date(1970, 3, 1)), _datenum(date(1970, 9, 1)), _datenum(date(1990, 1, 1)),
                          _datenum(date(1950, 1, 1)), _datenum(date(1980, 5, 5))]]),
        "photo_taken": np.array([[2000, 2000, 2010, 2009, 2005]]),
        "full_path": paths,
        "gender": np.array([[1.0, 0.0, np.nan, 1.0, 0.0]]),
        "face_location": boxes,
        "face_score": np.array([[4.5, 3.0, 2.0, -np.inf, 0.5]]),  # 4th: no face; 5th: below the score threshold
        "second_face_score": np.array([[np.nan, np.nan, np.nan, np.nan, np.nan]]),
    }
    savemat(path, {"wiki": wiki})


def test_age_from_dob_assumes_mid_year_photos() -> None:
    assert age_from_dob(_datenum(date(1970, 3, 1)), 2000) == 30
    assert age_from_dob(_datenum(date(1970, 9, 1)), 2000) == 29


def test_reader_filters_and_converts(tmp_path: Path) -> None:
    mat = tmp_path / "wiki.mat"
    _write(mat)
    faces = read_imdbwiki(mat)
    assert [f.path for f in faces] == ["00/person_0.jpg", "01/person_1.jpg", "02/person_2.jpg"]
    assert [f.age for f in faces] == [30, 29, 20]
    assert [f.female for f in faces] == [0.0, 1.0, None]  # IMDB-WIKI 1 = male → ours 1 = female
    assert faces[0].box == pytest.approx((10.0, 20.0, 110.0, 130.0))
    assert len(read_imdbwiki(mat, min_face_score=-1.0)) == 4  # the −inf row never counts
