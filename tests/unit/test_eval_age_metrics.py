"""Age-evaluation metrics, data reading, the hash split and face choice (fast, no networks)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from services.scoring.evaluation.data import read_age_samples, split_portion, subsample
from services.scoring.evaluation.faces import choose_face, fallback_landmarks
from services.scoring.evaluation.metrics import (
    age_band,
    eps_error,
    gender_accuracy,
    mae,
    range_coverage,
    summarize,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_mae_and_eps_error() -> None:
    assert mae([10, 20], [12, 17]) == pytest.approx(2.5)
    assert eps_error(np.array([30.0]), np.array([30.0]), np.array([5.0])) == pytest.approx(0.0)
    # one σ off: 1 − exp(−1/2)
    assert eps_error(np.array([35.0]), np.array([30.0]), np.array([5.0])) == pytest.approx(1 - np.exp(-0.5))
    assert eps_error(np.array([30.0]), np.array([30.0]), np.array([0.0])) == pytest.approx(0.0)  # σ = 0 guarded


@pytest.mark.parametrize(("age", "band"), [(0, "0-12"), (12.9, "0-12"), (13, "13-19"), (19, "13-19"),
                                           (20, "20-39"), (39, "20-39"), (40, "40-59"), (60, "60+"), (116, "60+")])
def test_age_bands(age: float, band: str) -> None:
    assert age_band(age) == band


def test_summarize_breaks_down_by_band_race_gender() -> None:
    true = np.array([5.0, 30.0, 70.0, 31.0])
    pred = np.array([6.0, 33.0, 60.0, 31.0])
    out = summarize(true, pred, {"m": true + 5}, np.array([0.9, 0.1, 0.8, 0.2]), np.array([1.0, 0.0, 0.0, 0.0]),
                    np.array([2.0, 2.0, 2.0, 2.0]), ["0", "1", "0", None])
    assert out["mae"] == pytest.approx(3.5)
    assert out["member_mae"]["m"] == pytest.approx(5.0)
    assert out["by_band"]["20-39"] == {"n": 2, "mae": pytest.approx(1.5), "member_mae": {"m": pytest.approx(5.0)},
                                       "gender_accuracy": 1.0}
    assert out["by_band"]["60+"]["gender_accuracy"] == 0.0  # the 70-year-old man called female
    assert out["by_band"]["0-12"]["gender_accuracy"] == 1.0
    assert set(out["by_race"]) == {"White", "Black", "unknown"}
    assert out["gender_accuracy"] == pytest.approx(0.75)
    assert out["by_gender"]["female"]["n"] == 1
    assert 0 < out["eps_error"] < 1


def test_range_coverage_counts_whole_years_the_range_reaches() -> None:
    low, high = np.array([20.0, 20.0, 20.0, 20.0]), np.array([29.6, 29.6, 29.6, 29.6])
    assert range_coverage(low, high, np.array([19.5, 25.0, 30.0, 31.0])) == pytest.approx(0.75)  # 31 is outside
    out = summarize(np.array([5.0, 30.0, 70.0]), np.array([6.0, 33.0, 60.0]), {}, age_range=(
        np.array([3.0, 25.0, 55.0]), np.array([9.0, 35.0, 65.0])))
    assert out["range_coverage"] == pytest.approx(2 / 3)  # the 70-year-old is outside 55–65
    assert out["by_band"]["60+"]["range_coverage"] == 0.0 and out["by_band"]["0-12"]["range_coverage"] == 1.0


def test_gender_accuracy_ignores_unknown_labels() -> None:
    assert gender_accuracy(np.array([0.9, 0.1, 0.7]), np.array([1.0, np.nan, 0.0])) == pytest.approx(0.5)


def test_split_is_deterministic_and_near_70_30() -> None:
    names = [f"img_{i}.jpg" for i in range(2000)]
    train = sum(split_portion(n) == "train" for n in names)
    assert 0.66 < train / len(names) < 0.74
    assert [split_portion(n) for n in names] == [split_portion(n) for n in names]


def test_read_labels_with_optional_columns_and_nested_subsample(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,apparent_age,apparent_age_std,gender,race\n"
                                         "a.jpg,30,3.5,1,0\nb.jpg,,2,0,1\nc.jpg,41,4,,2\nd.jpg,7,1,0,3\n")
    samples = read_age_samples(tmp_path, "apparent_age")
    assert [s.file for s in samples] == ["a.jpg", "c.jpg", "d.jpg"]  # no target → skipped
    assert samples[0].age_std == 3.5 and samples[0].female == 1.0 and samples[1].female is None
    small, large = subsample(samples, 1), subsample(samples, 2)
    assert {s.file for s in small} <= {s.file for s in large}
    with pytest.raises(ValueError, match="none of"):
        read_age_samples(tmp_path, "real_age")


def _face(box: tuple[float, float, float, float]) -> SimpleNamespace:
    return SimpleNamespace(box=box, size=float(np.sqrt((box[2] - box[0]) * (box[3] - box[1]))))


def test_choose_face_prefers_large_and_central() -> None:
    central = _face((40, 40, 60, 60))
    corner = _face((0, 0, 22, 22))  # a bit larger but at the corner
    assert choose_face([corner, central], 100, 100) is central
    assert choose_face([], 100, 100) is None


def test_fallback_landmarks_fill_the_image() -> None:
    marks = fallback_landmarks(200, 100)
    assert marks.shape == (5, 2)
    assert (marks[:, 0] > 0).all() and (marks[:, 0] < 100).all() and (marks[:, 1] < 200).all()
    assert marks[0, 0] < marks[1, 0]  # left eye left of right eye


@pytest.mark.data
def test_shared_utkface_labels_read_and_split() -> None:
    folder = SHARED / "utkface"
    if not (folder / "labels.csv").exists():
        pytest.skip(f"{folder} absent: shared face data not available on this machine")
    train = read_age_samples(folder, "age", "train")
    held = read_age_samples(folder, "age", "heldout")
    assert not {s.file for s in train} & {s.file for s in held}
    assert 0.66 < len(train) / (len(train) + len(held)) < 0.74
