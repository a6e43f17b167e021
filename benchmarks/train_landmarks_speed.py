"""Photos per second of the landmark pass that folder training runs, against the evaluation extract it replaced.

    PYTHONPATH=. .venv/bin/python benchmarks/train_landmarks_speed.py --dataset ../shared/data/utkface \\
        --photos 200 --repeats 3

Each repeat takes a fresh set of ``--photos`` train-portion photos (so no cache helps either side) and runs both
passes on it, alternating which goes first: ``evaluation.extract`` (detector + every backbone member, one growing
cache file) and ``training.landmarks.folder_landmarks`` (detector alone, photo decoding in worker processes,
append-only shards). Medians are printed, with the largest landmark difference between the two passes (same
detector, same choice of face: it should be ~0). Raw numbers go to ``.howhot/results/train_landmarks_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from libs.common.settings import Settings
from services.face.detector import FaceDetector
from services.scoring.evaluation.data import read_age_samples
from services.scoring.evaluation.extract import extract
from services.scoring.training.landmarks import decode_workers, folder_landmarks

RESULTS = Path(".howhot/results/train_landmarks_speed.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, help="photo decoders of the landmark pass (default as the CLI)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = read_age_samples(args.dataset, "age", "train")
    if len(samples) < args.photos * args.repeats:
        parser.error(f"{args.dataset} has {len(samples)} train photos; need photos × repeats")
    detector = FaceDetector.from_settings(Settings(), precision="fp32")
    workers = decode_workers(args.workers)
    rows = []
    for r in range(args.repeats):
        chunk = samples[r * args.photos:(r + 1) * args.photos]
        with tempfile.TemporaryDirectory() as scratch:
            timed: dict[str, float] = {}
            marks: dict[str, dict[str, np.ndarray]] = {}
            order = ("extract", "landmarks") if r % 2 == 0 else ("landmarks", "extract")
            for name in order:
                began = time.perf_counter()
                if name == "extract":
                    out = extract(chunk, args.dataset, cache_dir=Path(scratch) / "eval", progress=False,
                                  detector=detector)
                    marks[name] = {f: row["landmarks"] for f, row in out.items()}
                else:
                    found = folder_landmarks(chunk, args.dataset, detector=detector, workers=workers,
                                             cache_dir=Path(scratch) / "marks",
                                             evaluation_cache_dir=Path(scratch) / "none", progress=False)
                    marks[name] = found.landmarks
                timed[name] = len(chunk) / (time.perf_counter() - began)
            eval_bytes = sum(f.stat().st_size for f in (Path(scratch) / "eval").rglob("*.npz"))
            shard_bytes = sum(f.stat().st_size for f in (Path(scratch) / "marks").rglob("*.npz"))
            diff = max(float(np.abs(marks["extract"][s.file] - marks["landmarks"][s.file]).max()) for s in chunk)
            rows.append({"extract_photos_per_s": timed["extract"], "landmarks_photos_per_s": timed["landmarks"],
                         "max_landmark_diff_px": diff, "extract_cache_bytes_per_photo": eval_bytes / len(chunk),
                         "shard_bytes_per_photo": shard_bytes / len(chunk)})
            print(f"repeat {r + 1}/{args.repeats}: extract {timed['extract']:.1f} photos/s, landmark pass "
                  f"{timed['landmarks']:.1f} photos/s, largest landmark difference {diff:.4f} px", flush=True)
    summary = {
        "dataset": str(args.dataset), "photos": args.photos, "repeats": args.repeats, "threads": args.threads,
        "decode_workers": workers,
        "median_extract_photos_per_s": statistics.median(r["extract_photos_per_s"] for r in rows),
        "median_landmarks_photos_per_s": statistics.median(r["landmarks_photos_per_s"] for r in rows),
        "max_landmark_diff_px": max(r["max_landmark_diff_px"] for r in rows),
        "extract_cache_bytes_per_photo": statistics.median(r["extract_cache_bytes_per_photo"] for r in rows),
        "shard_bytes_per_photo": statistics.median(r["shard_bytes_per_photo"] for r in rows), "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"median: extract {summary['median_extract_photos_per_s']:.1f} photos/s, landmark pass "
          f"{summary['median_landmarks_photos_per_s']:.1f} photos/s "
          f"({summary['median_landmarks_photos_per_s'] / summary['median_extract_photos_per_s']:.1f}×); "
          f"landmarks agree within {summary['max_landmark_diff_px']:.4f} px; stored per photo: extract cache "
          f"{summary['extract_cache_bytes_per_photo'] / 1024:.1f} KiB, landmark shards "
          f"{summary['shard_bytes_per_photo']:.0f} B → {RESULTS}")


if __name__ == "__main__":
    main()
