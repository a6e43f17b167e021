"""Our ensemble and its members beside an external peer (@vladmandic/face-api) on the same FG-NET photos.

    cd benchmarks/peers && npm install && \
        node faceapi_age.js --dataset ../../../shared/data/fgnet --out ../results/age_peers_faceapi_fgnet300.json \
        --files <list of the 300 files>          # the list: see --write-list below
    .venv/bin/python benchmarks/age_peers.py --write-list /tmp/fgnet300.txt   # the same 300-file hash sample
    .venv/bin/python benchmarks/age_peers.py                                  # the table

Our side comes from the ``howhot eval age`` cache (full pipeline, default and commercial-safe calibrations).
MAE is reported on the photos where *both* found a face (a fair comparison of the estimators), and per system on
everything it scored (face-api has no fallback: a miss has no age).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.scoring.ensemble import load_calibration  # noqa: E402
from services.scoring.eval_age import with_image_digests  # noqa: E402
from services.scoring.evaluation.data import read_age_samples, subsample  # noqa: E402
from services.scoring.evaluation.extract import BACKBONE_MEMBERS, cache_path, extract_embedder, load_cache  # noqa: E402
from services.scoring.evaluation.predict import embedder_kinds, predict, registered_heads  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "fgnet"
SAMPLE = 300  # face-api runs ~0.3–3 s per photo on one shared wasm thread: a hash-sample keeps it to minutes
PEER_FILE = REPO / "benchmarks" / "results" / "age_peers_faceapi_fgnet300.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write-list", type=Path, help="write the sample's file names (for the node script)")
    args = parser.parse_args()
    samples = subsample(read_age_samples(DATA, "real_age"), SAMPLE)
    if args.write_list:
        args.write_list.write_text("\n".join(s.file for s in samples) + "\n")
        return
    rows_by_file = load_cache(cache_path(DATA, "detect", BACKBONE_MEMBERS))
    for kind in embedder_kinds(load_calibration("default").members):  # embedding gender and ArcFace age members
        rows_by_file = extract_embedder(samples, rows_by_file, DATA, kind, progress=False)
    rows = with_image_digests([rows_by_file[s.file] for s in samples], load_calibration("default").members, samples)[0]
    ages = np.array([s.age for s in samples])
    ours_found = np.array([bool(r["detected"]) for r in rows])
    peer = {r["file"]: r for r in json.loads(PEER_FILE.read_text())["results"]}
    peer_found = np.array([peer[s.file]["detected"] for s in samples])
    peer_age = np.array([peer[s.file].get("age", np.nan) for s in samples])
    both = ours_found & peer_found
    systems: dict[str, np.ndarray] = {}
    for profile in ("default", "commercial-safe"):
        cal = load_calibration(profile)
        preds = predict(rows, cal, registered_heads(cal.members))
        systems[f"Howhot ensemble ({profile})"] = preds.age
        for name, age in preds.member_age.items():
            systems.setdefault(f"member {name}", age)
    systems["@vladmandic/face-api 1.7.15"] = peer_age
    lines = [f"FG-NET hash-sample of {len(samples)} photos (real ages {ages.min():.0f}–{ages.max():.0f}); "
             f"both found a face on {both.sum()}; our pipeline found {ours_found.sum()}, face-api {peer_found.sum()}.",
             "", "| system | MAE where both found a face | its own detections: n / MAE | ms per image |",
             "|---|---|---|---|"]
    ours_ms = float(np.mean([r["detect_ms"] + r["member_ms"] for r in rows]))
    peer_ms = float(np.mean([peer[s.file]["ms"] for s in samples]))
    for name, age in systems.items():
        own = peer_found if "face-api" in name else ours_found
        ms = peer_ms if "face-api" in name else ours_ms
        lines.append(f"| {name} | {np.mean(np.abs(age[both] - ages[both])):.2f} | {own.sum()} / "
                     f"{np.mean(np.abs(age[own] - ages[own])):.2f} | {ms:.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
