"""Detection rate and ms/image of the face detector on ../shared/data sets (figures for face_detection.md).

    PYTHONPATH=. .venv/bin/python benchmarks/face_evaluate.py fgnet utkface --limit utkface=1000 [--threads 1]
        [--precision auto|bf16|fp32]

Writes benchmarks/results/face_eval_<dataset>.json for the fp32 network, face_eval_<dataset>_bf16.json under bf16
autocast (missed files included), and prints a summary line per set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from libs.common.precision import PRECISIONS
from libs.common.settings import Settings
from services.face.detector import FaceDetector
from services.face.evaluate import evaluate_detection

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--limit", action="append", default=[], help="name=N: a seeded random sample of N images")
    parser.add_argument("--detector", default="retinaface_mobilenetv2")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="as HOWHOT_FACE_PRECISION")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    limits = {k: int(v) for k, v in (item.split("=") for item in args.limit)}
    detector = FaceDetector(model_name=args.detector, models_dir=Settings().models_dir, precision=args.precision)
    suffix = "_bf16" if detector.autocast_dtype == torch.bfloat16 else ""
    for name in args.datasets:
        started = time.time()
        result = evaluate_detection(SHARED_DATA / name, detector, limit=limits.get(name), sample=name in limits)
        result["torch_threads"] = torch.get_num_threads()
        result["precision"] = "bf16" if suffix else "fp32"
        result["wall_s"] = round(time.time() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"face_eval_{name}{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
        summary = {k: v for k, v in result.items() if k != "missed"}
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
