"""Detection-rate evaluation on a labelled folder (``images/`` + ``labels.csv``, one person per photo).

Used for the figures in benchmarks/results/face_detection.md: on one-person photos every image should yield at least
one face, so the share of images with ≥ 1 face at the detector's threshold is the recall that matters to users.
"""

from __future__ import annotations

import csv
import random
import statistics
from pathlib import Path
from typing import Any

from tqdm import tqdm

from libs.common.images import load_image_file
from services.face.detector import FaceDetector, timed_detect

FILE_COLUMN = "file"  # the image's file name under images/ in every labels.csv of ../shared/data
SAMPLE_SEED = 0  # a fixed seed so a sampled evaluation is repeatable


def list_images(dataset_dir: Path, limit: int | None = None, sample: bool = False) -> list[Path]:
    """Image paths from labels.csv (file order, or a seeded random sample when ``sample``), at most ``limit``."""
    with (dataset_dir / "labels.csv").open(newline="") as fh:
        files = [row[FILE_COLUMN] for row in csv.DictReader(fh)]
    if sample and limit is not None and limit < len(files):
        files = random.Random(SAMPLE_SEED).sample(files, limit)
    elif limit is not None:
        files = files[:limit]
    return [dataset_dir / "images" / name for name in files]


def evaluate_detection(
    dataset_dir: Path, detector: FaceDetector, limit: int | None = None, progress: bool = True, sample: bool = False
) -> dict[str, Any]:
    """Detection rate (≥ 1 face), mean faces per image and ms/image (median, mean; decode excluded) on a folder."""
    dataset_dir = Path(dataset_dir)
    paths = list_images(dataset_dir, limit, sample)
    counts: list[int] = []
    times: list[float] = []
    missed: list[str] = []
    for path in tqdm(paths, desc=dataset_dir.name, disable=not progress):
        faces, ms = timed_detect(detector, load_image_file(path))
        counts.append(len(faces))
        times.append(ms)
        if not faces:
            missed.append(path.name)
    n = len(paths)
    return {
        "dataset": dataset_dir.name,
        "images": n,
        "detected": n - len(missed),
        "detection_rate": (n - len(missed)) / n if n else float("nan"),
        "mean_faces_per_image": sum(counts) / n if n else float("nan"),
        "ms_per_image_median": statistics.median(times) if times else float("nan"),
        "ms_per_image_mean": statistics.fmean(times) if times else float("nan"),
        "missed": missed,
        "threshold": detector.threshold,
        "detector": detector.cfg.name,
    }
