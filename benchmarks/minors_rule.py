"""How the minors rule behaves on real faces: which children it withholds, and which adults lose their score.

    PYTHONPATH=. .venv/bin/python benchmarks/minors_rule.py [--profile default] [--thresholds 0.1,0.2,0.3,0.5]

The rule (``services/scoring/beauty/minors.py``) withholds attractiveness when the ensemble's age distribution puts
more than the threshold (default 0.2) below 18 (widened by the profile's ``spread_sd`` as in the service). Both of its
errors matter: a minor who gets a score, and an adult whose score is withheld (in a product whose whole point is the
score). Here the served ensemble (``FaceScorer.score_batch``, the profile's members and calibration) scores the face
pipeline's chips of
* UTKFace's held-out portion and all of FG-NET (real ages, children included; landmarks from the age cache that
  ``howhot eval age`` fills),
* FRL London (self-reported adult ages) and MEBeauty's test split (adults, no age labels; landmarks from the
  attractiveness cache),
and the share withheld is tabulated by true age group for several thresholds, with a plot of the withheld share by
year of age at the default threshold. Writes benchmarks/results/minors_rule.md and minors_rule.png.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from age_fit_calibration import cached_set  # noqa: E402
from tqdm import tqdm  # noqa: E402

from services.face.detector import FaceDetector  # noqa: E402
from services.scoring.beauty.cache import cached_landmarks  # noqa: E402
from services.scoring.beauty.chips import chips_for, load_rgb  # noqa: E402
from services.scoring.beauty.dataset import load_mebeauty  # noqa: E402
from services.scoring.beauty.evaluate import mebeauty_files  # noqa: E402
from services.scoring.beauty.minors import ADULT_AGE, MINOR_PROBABILITY_THRESHOLD, minor_probability  # noqa: E402
from services.scoring.chipsource import chip_from_landmarks  # noqa: E402
from services.scoring.evaluation.data import read_age_samples  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402
from services.scoring.scorer import FaceScorer  # noqa: E402

DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
BATCH = 32
RELIABILITY_BINS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
GROUPS = ((0, 13, "0–12"), (13, 16, "13–15"), (16, 18, "16–17"), (18, 21, "18–20"), (21, 26, "21–25"),
          (26, 200, "26+"))


def age_cache_chips(name: str, target: str, portion: str) -> tuple[list, list, np.ndarray]:
    """(chips, chip landmarks, true ages) of a set in the age cache, chips cut as the face service cuts them."""
    samples, rows = cached_set(name, target, portion)
    chips, marks = [], []
    for sample, row in zip(samples, rows, strict=True):
        chip, lm = chip_from_landmarks(load_rgb(Path(sample.path)), row["landmarks"])
        chips.append(chip)
        marks.append(lm)
    return chips, marks, np.array([s.age for s in samples], dtype=np.float64)


def beauty_cache_chips(name: str, files: list[str], keep: list[str]) -> tuple[list, list]:
    """Chips of the files ``keep`` from the attractiveness cache's landmarks (keyed by the full ``files`` list)."""
    folder = DATA / name
    marks = cached_landmarks(name, folder / "images", files, progress=False)
    index = {f: i for i, f in enumerate(files)}
    rows = np.array([index[f] for f in keep])
    return chips_for([folder / "images" / f for f in keep], marks["landmarks"][rows])


def p_minor(scorer: FaceScorer, chips: list, marks: list, label: str) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(chips), BATCH), desc=label, unit="batch"):
        scores = scorer.score_batch(chips[start:start + BATCH], marks[start:start + BATCH])
        out += [minor_probability(s.age_probs) for s in scores]
    return np.array(out)


def load_sets(scorer: FaceScorer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per set: (P(age < 18) per face, true age per face; NaN where the set has no age labels)."""
    sets = {}
    for name, target, portion in (("utkface", "age", "heldout"), ("fgnet", "real_age", "all")):
        chips, marks, ages = age_cache_chips(name, target, portion)
        sets[name] = (p_minor(scorer, chips, marks, name), ages)
    frl = read_age_samples(DATA / "frl_london", "age")
    with (DATA / "frl_london" / "labels.csv").open(newline="") as fh:
        frl_files = [row["file"] for row in csv.DictReader(fh)]
    chips, marks = beauty_cache_chips("frl_london", frl_files, [s.file for s in frl])
    sets["frl_london"] = (p_minor(scorer, chips, marks, "frl_london"), np.array([s.age for s in frl], np.float64))
    labels = load_mebeauty(DATA / "mebeauty")
    test = [f for f, split in zip(labels.files, labels.split, strict=True) if split == "test"]
    chips, marks = beauty_cache_chips("mebeauty", mebeauty_files(DATA / "mebeauty"), test)
    sets["mebeauty_test"] = (p_minor(scorer, chips, marks, "mebeauty"), np.full(len(test), np.nan))
    return sets


def table(sets: dict[str, tuple[np.ndarray, np.ndarray]], thresholds: list[float]) -> list[str]:
    head = "| set | true age | faces | " + " | ".join(f"withheld at {t:g}" for t in thresholds) + " |"
    lines = [head, "|" + "---|" * (3 + len(thresholds))]
    for name, (p, ages) in sets.items():
        groups = [(lo, hi, label) for lo, hi, label in GROUPS if np.any((ages >= lo) & (ages < hi))]
        masks = [(label, (ages >= lo) & (ages < hi)) for lo, hi, label in groups] or [("adults, unlabelled",
                                                                                       np.isnan(ages))]
        masks += [(f"all under {ADULT_AGE}", ages < ADULT_AGE), (f"all {ADULT_AGE}+", ages >= ADULT_AGE)] \
            if groups else []
        for label, mask in masks:
            if mask.any():
                cells = " | ".join(f"{np.mean(p[mask] > t):.1%}" for t in thresholds)
                lines.append(f"| {name} | {label} | {int(mask.sum())} | {cells} |")
    return lines


def reliability(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Is P(age < 18) a probability? Per bin of it: the share of faces that really are minors (labelled sets)."""
    names = [n for n, (_, ages) in sets.items() if not np.isnan(ages).all()]
    lines = ["| P(age < 18) | " + " | ".join(f"{n}: faces, share minors" for n in names) + " |",
             "|" + "---|" * (1 + len(names))]
    for lo, hi in itertools.pairwise(RELIABILITY_BINS):
        cells = []
        for name in names:
            p, ages = sets[name]
            mask = (p >= lo) & (p < hi) if hi < 1 else (p >= lo)
            cells.append(f"{int(mask.sum())}, {np.mean(ages[mask] < ADULT_AGE):.0%}" if mask.any() else "0, –")
        lines.append(f"| {lo:g}–{hi:g} | " + " | ".join(cells) + " |")
    return lines


def plot(sets: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, path: Path) -> None:
    """Withheld share per 2-year age bin (bins with ≥ 5 faces) at ``threshold``, one line per labelled set."""
    from services.scoring.evaluation.plots import line_chart

    edges = np.arange(0, 42, 2)
    series = {}
    for name, (p, ages) in sets.items():
        if np.isnan(ages).all():
            continue
        shares = []
        for lo, hi in itertools.pairwise(edges):
            mask = (ages >= lo) & (ages < hi)
            shares.append(float(np.mean(p[mask] > threshold)) if mask.sum() >= 5 else float("nan"))
        series[name] = shares
    path.write_bytes(line_chart(f"Minors rule: share withheld at P(age < {ADULT_AGE}) > {threshold:g}",
                                "true age (2-year bins; under 18 it should withhold, from 18 on it should not)",
                                "share withheld", edges[:-1] + 1, series))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--thresholds", default="0.1,0.2,0.3,0.5")
    args = parser.parse_args()
    torch.set_num_threads(2)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    provide_detector(FaceDetector.from_settings)  # used only where the attractiveness landmark cache misses
    scorer = FaceScorer(profile=args.profile, device="cpu")
    sets = load_sets(scorer)
    suffix = "" if args.profile == "default" else f"_{args.profile}"
    plot(sets, MINOR_PROBABILITY_THRESHOLD, RESULTS / f"minors_rule{suffix}.png")
    raw = REPO / ".howhot" / "results"
    raw.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .howhot yet
    np.savez(raw / f"minors_rule{suffix}.npz",
             **{f"{n}_{k}": v for n, (p, a) in sets.items() for k, v in (("p", p), ("age", a))})
    lines = [*table(sets, thresholds), "", "Calibration of P(age < 18) on the labelled sets:", "", *reliability(sets)]
    print("\n".join(lines))
    command = "PYTHONPATH=. .venv/bin/python benchmarks/minors_rule.py" + ("" if suffix == "" else
                                                                          f" --profile {args.profile}")
    (RESULTS / f"minors_rule{suffix}.md").write_text(
        f"# Minors rule on real faces (profile `{args.profile}`)\n\nCommand: `{command}` (see its docstring).\n\n"
        + "\n".join(lines) + f"\n\n![withheld share by age](minors_rule{suffix}.png)\n")


if __name__ == "__main__":
    main()
