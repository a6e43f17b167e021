"""Fit each profile's spread: the Gaussian widening (years + a share of the age) that makes the ensemble's age
distribution as wide as its real errors.

    PYTHONPATH=. .venv/bin/python benchmarks/age_fit_spread.py [--write]

Why: the distribution's width is what the product shows as uncertainty. It gives the reported 80 % age range
(quantiles 0.1–0.9), the std and P(age < 18) for the minors rule. The CC0-only ensemble (commercial-safe) was far
too sure of itself: its 80 % range held only 40 % of UTKFace's true ages, and benchmarks/minors_rule.py found
minors it put at P < 0.05. Per profile, the spread is chosen on UTKFace's **train** portion, the rows the
calibration itself is fitted on. It uses out-of-fold distributions (the same 2 folds as age_fit_calibration.py's
member-set choice, so no face is scored by weights fitted on it). The spread is a constant plus a share of the
face's age (older faces' errors are larger), and the winner on a grid of both is the one whose distributions are
best calibrated: for every level q = 0.05, 0.10, …, 0.95 a share q of true ages should lie below the q-quantile (mean
absolute gap over the levels, the probability integral transform's distance from uniform). The log likelihood and
the CRPS of the true ages are printed beside it: they weigh the tails more and would pick wider spreads that
over-cover the 80 % range. UTKFace held-out and FG-NET are only reported. ``--write`` stores it in
services/scoring/calibration/<profile>.json (``spread_sd``, ``spread_per_year``). The reported age (the expectation
before widening) does not change.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import numpy as np  # noqa: E402
from age_fit_calibration import CV_FOLDS, cached_set, fit, subset, train_outputs  # noqa: E402

from services.scoring.beauty.minors import ADULT_AGE, MINOR_PROBABILITY_THRESHOLD, minor_probability  # noqa: E402
from services.scoring.ensemble import (  # noqa: E402
    AGE_GRID,
    CALIBRATION_DIR,
    MAX_AGE,
    age_range,
    combined_age_probs,
    expectation,
    load_calibration,
    spread_years,
    widen,
)
from services.scoring.evaluation.metrics import range_coverage  # noqa: E402
from services.scoring.evaluation.predict import member_outputs, registered_heads  # noqa: E402
from services.scoring.models.registry import PRETRAINED_CONFIGS  # noqa: E402

SPREADS = tuple(float(s) for s in np.arange(0.0, 8.01, 0.5))  # the constant part (years)
SLOPES = tuple(round(float(k), 2) for k in np.arange(0.0, 0.201, 0.02))  # years of widening per year of age
PREDICTED_BANDS = ((0, 13), (13, 20), (20, 40), (40, 60), (60, 101))  # coverage by what the ensemble says
LEVELS = np.arange(0.05, 0.951, 0.05)  # quantile levels the calibration error averages over
FLOOR = 1e-4  # probability floor per 1-year bin: a true age the distribution rules out costs log(1e-4), not −∞


def _age_bins(ages: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(ages), 0, MAX_AGE).astype(int)


def calibration_error(probs: np.ndarray, ages: np.ndarray) -> float:
    """Mean over LEVELS of |share of true ages at or below the q-quantile − q| (mid-bin PIT for whole years)."""
    rows, bins = np.arange(len(ages)), _age_bins(ages)
    pit = np.cumsum(probs, axis=1)[rows, bins] - probs[rows, bins] / 2
    return float(np.mean([abs(np.mean(pit <= q) - q) for q in LEVELS]))


def log_likelihood(probs: np.ndarray, ages: np.ndarray) -> float:
    """Mean log probability of each true age's 1-year bin."""
    return float(np.mean(np.log(np.maximum(probs[np.arange(len(ages)), _age_bins(ages)], FLOOR))))


def crps(probs: np.ndarray, ages: np.ndarray) -> float:
    """Continuous ranked probability score on the 1-year grid (years; lower is better)."""
    step = AGE_GRID[None, :] >= _age_bins(ages)[:, None]
    return float(np.mean(np.sum((np.cumsum(probs, axis=1) - step) ** 2, axis=1)))


def out_of_fold_probs(profile: str, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(age mixtures, true ages) of UTKFace train rows, each from a calibration fitted on the other fold."""
    samples, rows = cached_set("utkface", "age", "train", members)
    outputs, keep = train_outputs(samples, rows, members)
    keep &= np.array([bool(r["detected"]) for r in rows])
    ages = np.array([s.age for s in samples])[keep]
    female = np.array([np.nan if s.female is None else s.female for s in samples])[keep]
    outputs = subset(outputs, keep)
    probs = np.zeros((len(ages), MAX_AGE + 1))
    for fold in range(CV_FOLDS):
        test = np.arange(len(ages)) % CV_FOLDS == fold
        cal = fit(subset(outputs, ~test), ages[~test], female[~test], profile, members, "cv")
        probs[test] = combined_age_probs(subset(outputs, test), cal)
    return probs, ages


def shipped_probs(profile: str, name: str, target: str, portion: str) -> tuple[np.ndarray, np.ndarray]:
    """The shipped calibration's age mixtures (before widening) on a cached set (report only)."""
    cal = load_calibration(profile)
    samples, rows = cached_set(name, target, portion, cal.age_members)
    outputs = member_outputs(rows, cal.age_members, cal.flip_members, registered_heads(cal.age_members))
    return combined_age_probs(outputs, cal), np.array([s.age for s in samples])


def widened(probs: np.ndarray, constant: float, per_year: float) -> np.ndarray:
    return widen(probs, spread_years(constant, per_year, expectation(probs)))


def summary(probs: np.ndarray, ages: np.ndarray, predicted: np.ndarray) -> str:
    """Range coverage (overall, then by predicted age), mean width, minors / adults withheld, for one set.

    ``probs`` are widened, ``predicted`` the ages before widening: the range and the minors check as served.
    """
    low, high = age_range(probs, predicted)
    bands = " ".join(f"{range_coverage(low[m], high[m], ages[m]):.0%}" if m.any() else "–"
                     for m in ((predicted >= lo) & (predicted < hi) for lo, hi in PREDICTED_BANDS))
    withheld = np.array([minor_probability(p) for p in probs]) > MINOR_PROBABILITY_THRESHOLD
    minors = ages < ADULT_AGE
    return (f"{range_coverage(low, high, ages):.1%} [{bands}] / {np.mean(high - low):.1f} y / "
            f"{np.mean(withheld[minors]):.1%} / {np.mean(withheld[~minors]):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="store the chosen spread in the calibration files")
    args = parser.parse_args()
    for profile in ("default", "commercial-safe"):
        cal = load_calibration(profile)
        members = [n for n in cal.age_members if PRETRAINED_CONFIGS[n].converter != "embedding_head"]
        train, train_ages = out_of_fold_probs(profile, members)
        errors = {(c, k): calibration_error(widened(train, c, k), train_ages) for c in SPREADS for k in SLOPES}
        best = min(errors, key=errors.__getitem__)
        shown = dict.fromkeys([(0.0, 0.0), *(min((key for key in errors if key[1] == k), key=errors.__getitem__)
                                             for k in SLOPES)])  # per slope its best constant
        reports = {name: shipped_probs(profile, name, target, portion)
                   for name, target, portion in (("utkface", "age", "heldout"), ("fgnet", "real_age", "all"))}
        print(f"\n{profile}: out-of-fold calibration error on UTKFace train ({len(train_ages)} faces) "
              f"→ spread {best[0]:g} years + {best[1]:g} × age")
        bands = ", ".join(f"{lo}–{hi - 1}" for lo, hi in PREDICTED_BANDS)
        print("| spread: years + per year of age | train: calibration error / log lik. / CRPS | train 80 % range: "
              "coverage / width | " + " | ".join(
                  f"{n}: 80 % range coverage [by predicted age {bands}] / width / minors withheld / adults withheld "
                  f"at {MINOR_PROBABILITY_THRESHOLD:g}" for n in reports) + " |")
        print("|---|---|---|" + "---|" * len(reports))
        for constant, per_year in shown:
            wide = widened(train, constant, per_year)
            low, high = age_range(wide, expectation(train))
            cells = [summary(widened(probs, constant, per_year), ages, expectation(probs))
                     for probs, ages in reports.values()]
            mark = " ← chosen" if (constant, per_year) == best else ""
            print(f"| {constant:g} + {per_year:g} × age{mark} | {errors[constant, per_year]:.4f} / "
                  f"{log_likelihood(wide, train_ages):.3f} / {crps(wide, train_ages):.3f} | "
                  f"{range_coverage(low, high, train_ages):.1%} / {np.mean(high - low):.1f} y | "
                  + " | ".join(cells) + " |", flush=True)
        if args.write:
            path = CALIBRATION_DIR / f"{profile}.json"
            cal.spread_sd, cal.spread_per_year = float(best[0]), float(best[1])
            cal.save(path)
            print(f"wrote spread_sd = {best[0]:g}, spread_per_year = {best[1]:g} to {path}")


if __name__ == "__main__":
    main()
