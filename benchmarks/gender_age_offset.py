"""Would a gender correction per predicted-age band help children? (experiment; nothing in the service changes)

    PYTHONPATH=. .venv/bin/python benchmarks/gender_age_offset.py [--data ../shared/data]

Reads the shipped default profile's P(female) for UTKFace from the eval cache (``.howhot/cache/age``, filled by
``howhot eval age --dataset ../shared/data/utkface --portion all``), fits one logit offset per predicted-age band by
log loss on the train portion (grid −1.5…1.5, step 0.1) and reports accuracy before/after on both portions, overall
and for true ages 0–12, plus each member's accuracy on children. Results: benchmarks/results/gender_embedding.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.scoring.ensemble import load_calibration  # noqa: E402
from services.scoring.eval_age import with_image_digests  # noqa: E402
from services.scoring.evaluation.data import read_age_samples  # noqa: E402
from services.scoring.evaluation.extract import extract, extract_embedder  # noqa: E402
from services.scoring.evaluation.predict import embedder_kinds, predict, registered_heads  # noqa: E402

BAND_EDGES = (0, 8, 13, 20, 200)  # predicted-age bands: < 8, 8–12, 13–19, 20+
OFFSET_GRID = np.round(np.arange(-1.5, 1.51, 0.1), 2)
CHILD_MAX_AGE = 12
EPS = 1e-6


def load(dataset: Path, portion: str) -> dict:
    """Detected, gender-labelled faces: the ensemble's and members' P(female), its age, and the truth."""
    calibration = load_calibration("default")
    samples = [s for s in read_age_samples(dataset, "age", portion) if s.female is not None]
    rows = extract(samples, dataset, "detect", progress=False)
    for kind in embedder_kinds(calibration.members):  # the embedding gender member, the ArcFace age member
        rows = extract_embedder(samples, rows, dataset, kind, progress=False)
    ordered = with_image_digests([rows[s.file] for s in samples], calibration.members, samples)[0]
    preds = predict(ordered, calibration, registered_heads(calibration.members))
    detected = np.array([bool(r["detected"]) for r in ordered])
    return {"p": preds.p_female[detected], "age": preds.age[detected],
            "female": np.array([s.female for s in samples], float)[detected],
            "true_age": np.array([s.age for s in samples], float)[detected],
            "members": {n: v[detected] for n, v in preds.member_p_female.items()}}


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def with_offsets(d: dict, offsets: list[float]) -> np.ndarray:
    z = logit(d["p"])
    for (lo, hi), offset in zip(itertools.pairwise(BAND_EDGES), offsets, strict=True):
        z[(d["age"] >= lo) & (d["age"] < hi)] += offset
    return 1 / (1 + np.exp(-z))


def fit_offsets(d: dict) -> list[float]:
    """Per band, the grid offset with the least log loss on ``d`` (the train portion)."""
    offsets = []
    for lo, hi in itertools.pairwise(BAND_EDGES):
        band = (d["age"] >= lo) & (d["age"] < hi)
        y, z = d["female"][band], logit(d["p"][band])

        def loss(offset: float, y: np.ndarray = y, z: np.ndarray = z) -> float:
            q = np.clip(1 / (1 + np.exp(-(z + offset))), EPS, 1 - EPS)
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

        offsets.append(float(min(OFFSET_GRID, key=loss)))
    return offsets


def accuracy(p: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> float:
    keep = np.ones_like(y, bool) if mask is None else mask
    return float(np.mean((p[keep] > 0.5) == (y[keep] > 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    dataset = parser.parse_args().data / "utkface"
    train, heldout = load(dataset, "train"), load(dataset, "heldout")
    offsets = fit_offsets(train)
    print("offsets by predicted-age band (<8, 8-12, 13-19, 20+):", offsets)
    print("| UTKFace | n | all: shipped → offsets | 0–12: shipped → offsets | members on 0–12 |")
    print("|---|---|---|---|---|")
    for name, d in (("train", train), ("held-out", heldout)):
        kids = d["true_age"] <= CHILD_MAX_AGE
        after = with_offsets(d, offsets)
        members = ", ".join(f"{n} {accuracy(v, d['female'], kids):.3f}" for n, v in d["members"].items())
        print(f"| {name} | {len(d['p'])} | {accuracy(d['p'], d['female']):.3f} → {accuracy(after, d['female']):.3f} "
              f"| {accuracy(d['p'], d['female'], kids):.3f} → {accuracy(after, d['female'], kids):.3f} | {members} |")


if __name__ == "__main__":
    main()
