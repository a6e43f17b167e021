"""Age and gender metrics, and their breakdown by age band, race and gender.

Why these: MAE in years is DEX's and FG-NET's standard figure; the ε-error is ChaLearn LAP's apparent-age measure
(it forgives errors where the human annotators disagreed); age bands expose the children/elderly weaknesses a global
MAE hides (PEERS.md lesson 1: the WRN's MAE is 14 on children).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

AGE_BANDS: tuple[tuple[str, float, float], ...] = (  # (label, lowest age, first age of the next band)
    ("0-12", 0.0, 13.0),
    ("13-19", 13.0, 20.0),
    ("20-39", 20.0, 40.0),
    ("40-59", 40.0, 60.0),
    ("60+", 60.0, float("inf")),
)
UTKFACE_RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
FEMALE_THRESHOLD = 0.5
MIN_STD = 1e-6  # an apparent-age σ of 0 would divide by zero; treat it as "annotators agreed exactly"


def mae(predicted: Sequence[float] | np.ndarray, true: Sequence[float] | np.ndarray) -> float:
    """Mean absolute error in years (NaN for no faces)."""
    p, t = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(p - t))) if len(p) else float("nan")


def eps_error(predicted: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """ChaLearn LAP ε-error: mean of 1 − exp(−(pred − μ)² / (2σ²)); 0 is perfect, 1 is hopeless."""
    p, mu = np.asarray(predicted, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    sigma = np.maximum(np.asarray(std, dtype=np.float64), MIN_STD)
    return float(np.mean(1.0 - np.exp(-((p - mu) ** 2) / (2.0 * sigma**2)))) if len(p) else float("nan")


def age_band(age: float) -> str:
    """The band label an age falls in."""
    for label, low, high in AGE_BANDS:
        if low <= age < high:
            return label
    return AGE_BANDS[0][0] if age < 0 else AGE_BANDS[-1][0]


def gender_accuracy(p_female: np.ndarray, true_female: np.ndarray) -> float:
    """Share of faces whose P(female) > 0.5 matches the 0/1 label (NaN labels ignored)."""
    p, y = np.asarray(p_female, dtype=np.float64), np.asarray(true_female, dtype=np.float64)
    known = ~np.isnan(y)
    if not known.any():
        return float("nan")
    return float(np.mean((p[known] > FEMALE_THRESHOLD) == (y[known] > FEMALE_THRESHOLD)))


def range_coverage(low: np.ndarray, high: np.ndarray, true_age: np.ndarray) -> float:
    """Share of true ages inside the reported range (the ensemble's 80 % range should hold about 80 %).

    Labels are whole years, so a year counts as inside when the range reaches into it (±½ year).
    """
    true_age = np.asarray(true_age, dtype=np.float64)
    return float(np.mean((true_age >= np.asarray(low) - 0.5) & (true_age <= np.asarray(high) + 0.5)))


def race_label(race: str | None) -> str:
    """UTKFace's race codes as words; other data sets' labels unchanged."""
    return UTKFACE_RACES.get(str(race), str(race)) if race not in (None, "") else "unknown"


def group_mae(errors: np.ndarray, groups: Sequence[str], order: Sequence[str] | None = None) -> dict[str, dict]:
    """{group: {n, mae}} of absolute errors, in ``order`` when given (groups without faces are left out)."""
    groups_arr = np.asarray(groups)
    labels = list(order) if order is not None else sorted(set(groups_arr.tolist()))
    out = {}
    for label in labels:
        rows = groups_arr == label
        if rows.any():
            out[label] = {"n": int(rows.sum()), "mae": float(np.mean(np.abs(errors[rows])))}
    return out


def summarize(
    true_age: np.ndarray,
    ensemble_age: np.ndarray,
    member_ages: Mapping[str, np.ndarray],
    p_female: np.ndarray | None = None,
    true_female: np.ndarray | None = None,
    age_std: np.ndarray | None = None,
    races: Sequence[str | None] | None = None,
    age_range: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """All figures for one set of faces: overall, per member, per age band / race / gender; with ``age_range``
    (low, high) the share of true ages the reported range holds, overall and per band."""
    true_age = np.asarray(true_age, dtype=np.float64)
    errors = np.asarray(ensemble_age, dtype=np.float64) - true_age
    out: dict = {"n": len(true_age), "mae": mae(ensemble_age, true_age),
                 "member_mae": {n: mae(a, true_age) for n, a in member_ages.items()}}
    if age_std is not None and not np.isnan(age_std).any():
        out["eps_error"] = eps_error(ensemble_age, true_age, age_std)
    bands = [age_band(a) for a in true_age]
    bands_arr = np.asarray(bands)
    out["by_band"] = group_mae(errors, bands, [b[0] for b in AGE_BANDS])
    for name, ages in member_ages.items():
        member_err = np.asarray(ages) - true_age
        for band, entry in group_mae(member_err, bands, [b[0] for b in AGE_BANDS]).items():
            out["by_band"][band].setdefault("member_mae", {})[name] = entry["mae"]
    if age_range is not None:
        low, high = (np.asarray(a, dtype=np.float64) for a in age_range)
        out["range_coverage"] = range_coverage(low, high, true_age)
        for band, entry in out["by_band"].items():
            rows = bands_arr == band
            entry["range_coverage"] = range_coverage(low[rows], high[rows], true_age[rows])
    if races is not None and any(r not in (None, "") for r in races):
        out["by_race"] = group_mae(errors, [race_label(r) for r in races])
    if true_female is not None and p_female is not None and not np.isnan(true_female).all():
        out["gender_accuracy"] = gender_accuracy(p_female, true_female)
        known = ~np.isnan(true_female)
        labels = np.where(np.asarray(true_female)[known] > FEMALE_THRESHOLD, "female", "male")
        out["by_gender"] = group_mae(errors[known], labels.tolist(), ["female", "male"])
        # where gender errors sit: infants' faces carry little of it, so one figure hides the bands
        for band, entry in out["by_band"].items():
            rows = bands_arr == band
            accuracy = gender_accuracy(np.asarray(p_female)[rows], np.asarray(true_female)[rows])
            if not np.isnan(accuracy):  # NaN: no labelled face in this band
                entry["gender_accuracy"] = accuracy
    return out
