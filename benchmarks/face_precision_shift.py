"""How far bf16 autocast moves the detector's output from the fp32 network, on real photos (face_detection.md §2).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_precision_shift.py fgnet --threads 1

Runs the full ``detect`` twice per image (fp32, then bf16), matches faces by box IoU and reports: images whose face
count differs, fp32 faces with no bf16 match, and the landmark shift in pixels and as a share of the inter-ocular
distance (the scale alignment works at). Writes benchmarks/results/face_precision_<dataset>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from libs.common.images import load_image_file
from libs.common.settings import Settings
from services.face.detector import DetectedFace, FaceDetector
from services.face.evaluate import list_images
from services.face.postprocess import box_iou

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
SAME_FACE_IOU = 0.5  # a bf16 face overlapping an fp32 face this much is the same face
WORST_LISTED = 10


def _timed(detector: FaceDetector, image: np.ndarray) -> tuple[list[DetectedFace], float]:
    """Faces and the process CPU milliseconds the call took (wall time is meaningless on the shared box)."""
    start = time.process_time()
    faces = detector.detect(image)
    return faces, (time.process_time() - start) * 1000.0


def landmark_shifts(reference: list[DetectedFace], other: list[DetectedFace]) -> list[tuple[float, float, float]]:
    """Per reference face matched in ``other``: (mean landmark shift px, max shift px, mean shift / inter-ocular)."""
    if not reference or not other:
        return []
    iou = box_iou(torch.tensor([f.box for f in reference]), torch.tensor([f.box for f in other]))
    shifts = []
    for i, face in enumerate(reference):
        j = int(iou[i].argmax())
        if float(iou[i, j]) < SAME_FACE_IOU:
            continue
        ref = face.landmarks_array()
        distance = np.linalg.norm(ref - other[j].landmarks_array(), axis=1)
        inter_ocular = max(float(np.linalg.norm(ref[1] - ref[0])), 1.0)
        shifts.append((float(distance.mean()), float(distance.max()), float(distance.mean()) / inter_ocular))
    return shifts


def compare(dataset_dir: Path, limit: int | None, sample: bool) -> dict[str, object]:
    """fp32 vs bf16 detections on every image of a labelled folder."""
    models_dir = Settings().models_dir
    fp32 = FaceDetector(models_dir=models_dir, precision="fp32")
    bf16 = FaceDetector(models_dir=models_dir, precision="bf16")
    rows, count_differs, unmatched, cpu = [], [], 0, {"fp32": [], "bf16": []}
    for path in tqdm(list_images(dataset_dir, limit, sample), desc=dataset_dir.name):
        image = load_image_file(path)
        ref, ref_ms = _timed(fp32, image)
        low, low_ms = _timed(bf16, image)
        cpu["fp32"].append(ref_ms)
        cpu["bf16"].append(low_ms)
        if len(ref) != len(low):
            count_differs.append(path.name)
        shifts = landmark_shifts(ref, low)
        unmatched += len(ref) - len(shifts)
        rows += [(path.name, *s) for s in shifts]
    means = np.array([r[1] for r in rows])
    relative = np.array([r[3] for r in rows])
    return {
        "dataset": dataset_dir.name,
        "images": len(cpu["fp32"]),
        "faces_compared": len(rows),
        "images_with_different_face_count": count_differs,
        "fp32_faces_without_bf16_match": unmatched,
        "landmark_shift_px": {"mean": round(float(means.mean()), 3), "median": round(float(np.median(means)), 3),
                              "p95": round(float(np.percentile(means, 95)), 3),
                              "max_single_landmark": round(max(r[2] for r in rows), 2)},
        "landmark_shift_inter_ocular": {"mean": round(float(relative.mean()), 4),
                                        "p95": round(float(np.percentile(relative, 95)), 4),
                                        "max": round(float(relative.max()), 4)},
        "worst": [{"file": r[0], "mean_px": round(r[1], 2), "max_px": round(r[2], 2), "inter_ocular": round(r[3], 3)}
                  for r in sorted(rows, key=lambda r: -r[3])[:WORST_LISTED]],
        "cpu_ms_per_image_median": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--limit", action="append", default=[], help="name=N: a seeded random sample of N images")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    limits = {k: int(v) for k, v in (item.split("=") for item in args.limit)}
    for name in args.datasets:
        started = time.time()
        result = compare(SHARED_DATA / name, limits.get(name), sample=name in limits)
        result |= {"torch_threads": torch.get_num_threads(), "wall_s": round(time.time() - started, 1),
                   "load_avg_1min_end": round(os.getloadavg()[0], 2)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"face_precision_{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "worst"}))


if __name__ == "__main__":
    main()
