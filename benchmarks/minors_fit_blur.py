"""Fit each profile's minors-rule blur: the Gaussian widening (years) that makes P(age < 18) a probability.

    PYTHONPATH=. .venv/bin/python benchmarks/minors_fit_blur.py [--write]

Why: the minors rule withholds attractiveness when the ensemble puts more than 0.2 of its age distribution below 18.
That reads as "more than a 20 % chance of being a minor" only if the distribution's width matches the ensemble's
real errors. benchmarks/minors_rule.py found the CC0-only ensemble (commercial-safe) far too sure of itself: a
fifth of FG-NET's faces it gives P < 0.05 are minors. Per profile, the blur is chosen on UTKFace's **train**
portion, the rows the calibration itself is fitted on, from out-of-fold distributions (the same 2 folds as
age_fit_calibration.py's member-set choice, so no face is scored by weights fitted on it): the blur with the
lowest log loss of P(age < 18) against "is a minor". UTKFace held-out and FG-NET are only reported. ``--write``
stores the blur in services/scoring/calibration/<profile>.json (``minor_blur_sd``), nothing else changes.
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
from services.scoring.ensemble import CALIBRATION_DIR, combined_age_probs, load_calibration  # noqa: E402
from services.scoring.evaluation.predict import member_outputs, registered_heads  # noqa: E402
from services.scoring.models.registry import PRETRAINED_CONFIGS  # noqa: E402

BLURS = tuple(np.arange(0.0, 8.01, 0.5))
EPS = 1e-6


def p_minor(probs: np.ndarray, blur: float) -> np.ndarray:
    return np.array([minor_probability(p, blur_sd=blur) for p in probs])


def log_loss(p: np.ndarray, minor: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(np.where(minor, np.log(p), np.log(1 - p))))


def out_of_fold_probs(profile: str, members: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(age distributions, true ages) of UTKFace train rows, each from a calibration fitted on the other fold."""
    samples, rows = cached_set("utkface", "age", "train")
    outputs, keep = train_outputs(samples, rows, members)
    keep &= np.array([bool(r["detected"]) for r in rows])
    ages = np.array([s.age for s in samples])[keep]
    female = np.array([np.nan if s.female is None else s.female for s in samples])[keep]
    outputs = subset(outputs, keep)
    probs = np.zeros((len(ages), 101))
    for fold in range(CV_FOLDS):
        test = np.arange(len(ages)) % CV_FOLDS == fold
        cal = fit(subset(outputs, ~test), ages[~test], female[~test], profile, members, "cv")
        probs[test] = combined_age_probs(subset(outputs, test), cal)
    return probs, ages


def shipped_probs(profile: str, name: str, target: str, portion: str) -> tuple[np.ndarray, np.ndarray]:
    """The shipped calibration's age distributions on a cached set (report only)."""
    cal = load_calibration(profile)
    samples, rows = cached_set(name, target, portion)
    outputs = member_outputs(rows, cal.age_members, cal.flip_members, registered_heads(cal.age_members))
    return combined_age_probs(outputs, cal), np.array([s.age for s in samples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="store the chosen blur in the calibration files")
    args = parser.parse_args()
    t = MINOR_PROBABILITY_THRESHOLD
    for profile in ("default", "commercial-safe"):
        cal = load_calibration(profile)
        members = [n for n in cal.age_members if PRETRAINED_CONFIGS[n].converter != "embedding_head"]
        train, train_ages = out_of_fold_probs(profile, members)
        losses = {b: log_loss(p_minor(train, b), train_ages < ADULT_AGE) for b in BLURS}
        best = min(BLURS, key=lambda b: losses[b])
        reports = {name: shipped_probs(profile, name, target, portion)
                   for name, target, portion in (("utkface", "age", "heldout"), ("fgnet", "real_age", "all"))}
        print(f"\n{profile}: out-of-fold log loss on UTKFace train ({len(train_ages)} faces) → blur {best:g} years")
        print("| blur (years) | train log loss | " + " | ".join(
            f"{n}: minors withheld / adults withheld at {t:g}" for n in reports) + " |")
        print("|---|---|" + "---|" * len(reports))
        for b in BLURS:
            cells = []
            for probs, ages in reports.values():
                withheld = p_minor(probs, b) > t
                cells.append(f"{np.mean(withheld[ages < ADULT_AGE]):.1%} / {np.mean(withheld[ages >= ADULT_AGE]):.1%}")
            mark = " ← chosen" if b == best else ""
            print(f"| {b:g}{mark} | {losses[b]:.4f} | " + " | ".join(cells) + " |")
        if args.write:
            path = CALIBRATION_DIR / f"{profile}.json"
            cal.minor_blur_sd = float(best)
            cal.save(path)
            print(f"wrote minor_blur_sd = {best:g} to {path}")


if __name__ == "__main__":
    main()
