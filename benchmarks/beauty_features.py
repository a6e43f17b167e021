"""Compute and cache the members' feature blocks for MEBeauty and FRL London (run once; everything else reads them).

    .venv/bin/python benchmarks/beauty_features.py [--data ../shared/data] [--no-wrn] [--wrn-flip]

The CC0 members run with flip TTA (cheap); WRN-16-8 costs ~0.4 s per crop on a shared 2-core CPU, so by default it
runs without flip (one pass per face).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402 - needs the repo on sys.path when run as a script

from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.beauty.cache import DEFAULT_CACHE_DIR, cached_features, cached_landmarks  # noqa: E402
from services.scoring.beauty.features import CC0_MEMBERS  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / DEFAULT_CACHE_DIR)
    parser.add_argument("--no-wrn", action="store_true", help="CC0 members only")
    parser.add_argument("--wrn-flip", action="store_true", help="flip TTA for WRN-16-8 too (2x its cost)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # used only where the landmark cache misses
    torch.set_num_threads(args.threads)
    for name in ("frl_london", "mebeauty"):
        folder = args.data / name
        with (folder / "labels.csv").open(newline="") as fh:
            files = [row["file"] for row in csv.DictReader(fh)]
        start = time.time()
        marks = cached_landmarks(name, folder / "images", files, args.cache)
        print(f"{name}: {len(files)} images, {int(marks['detected'].sum())} faces detected "
              f"({len(files) - int(marks['detected'].sum())} fixed-geometry chips)")
        members = list(CC0_MEMBERS) + ([] if args.no_wrn else ["wrn16_8_imdbwiki"])
        blocks = cached_features(name, folder / "images", files, members, {"wrn16_8_imdbwiki": args.wrn_flip},
                                 args.cache)
        dims = ", ".join(f"{k}:{v.shape[1]}" for k, v in sorted(blocks.items()))
        print(f"{name}: features in {time.time() - start:.0f}s -> {dims}")


if __name__ == "__main__":
    main()
