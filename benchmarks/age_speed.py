"""ms per face of the whole ensemble (FaceScorer.score_batch) with and without the DEX-head members.

    .venv/bin/python benchmarks/age_speed.py [--n 64] [--batch 16]

Chips: the first N FG-NET photos, aligned from the landmarks cached by ``howhot eval age`` (no detection here: the
detector's cost is reported by the eval itself). Each configuration is warmed up, then timed over N faces in batches;
the machine is a shared 2-core CPU, so figures vary ±20 % with the neighbours' load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.common.alignment import align_face  # noqa: E402
from libs.common.images import load_image_file as load_image  # noqa: E402
from services.scoring.ensemble import CALIBRATION_DIR, EnsembleCalibration  # noqa: E402
from services.scoring.evaluation.data import read_age_samples  # noqa: E402
from services.scoring.evaluation.extract import BACKBONE_MEMBERS, cache_path, load_cache  # noqa: E402
from services.scoring.scorer import FaceScorer  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "fgnet"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = load_cache(cache_path(DATA, "detect", BACKBONE_MEMBERS))
    samples = [s for s in read_age_samples(DATA, "real_age") if s.file in rows][: args.n]
    chips = [align_face(load_image(s.path), rows[s.file]["landmarks"]) for s in samples]
    results = {}
    for label, file in (("default", "default.json"), ("default + DEX heads", "default-dex-heads.json"),
                        ("commercial-safe", "commercial-safe.json")):
        path = CALIBRATION_DIR / file
        if not path.exists():
            continue
        cal = EnsembleCalibration.load(path)
        scorer = FaceScorer(profile=cal.profile, device="cpu", calibration=cal)
        started = time.perf_counter()
        for i in range(0, len(chips), args.batch):
            part = chips[i:i + args.batch]
            scorer.score_batch([c.chip for c in part], [c.landmarks for c in part])
        ms = (time.perf_counter() - started) * 1000 / len(chips)
        results[label] = {"members": cal.members, "ms_per_face": round(ms, 1)}
        print(f"{label}: {ms:.1f} ms/face ({', '.join(cal.members)})", flush=True)
    out = REPO / "benchmarks" / "results" / "age_speed.json"
    out.write_text(json.dumps({"n": len(chips), "batch": args.batch, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
