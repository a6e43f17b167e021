"""Median ms per 640-px image for the face detector (full ``detect``: conversion, resize, network, NMS, mapping).

    PYTHONPATH=. .venv/bin/python benchmarks/face_speed.py --threads 1 2 --runs 30 --precision fp32 bf16

Images: the astronaut resized to 640x640 (one face) and to 640x480 (a 4:3 photo, cropped), plus the network alone on
both input sizes. One row per thread count and precision (``auto`` resolves as the service would, see
``libs.common.precision``). The machine is shared: the load average is printed next to each figure; trust the minimum
and the CPU time when it is high.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from libs.common.precision import PRECISIONS
from libs.common.settings import Settings
from services.face.detector import FaceDetector, network_outputs

SIDE = 640
PHOTO_HEIGHT = 480  # a 4:3 photo at 640 px


def _bench(fn: object, runs: int) -> dict[str, float]:
    """Wall-clock and process-CPU milliseconds per call. With one thread, CPU time is what the call would take on an
    idle core — the figure to trust when other jobs share the machine (wall time then mostly measures waiting)."""
    fn()  # type: ignore[operator]
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "p90_ms": round(float(np.percentile(times, 90)), 1), "median_cpu_ms": round(statistics.median(cpu), 1)}


def count_macs(model: torch.nn.Module, height: int, width: int) -> float:
    """Multiply-accumulates of the convolutions for one input (GMAC), via forward hooks."""
    total = [0]

    def hook(module: torch.nn.Conv2d, _inputs: object, output: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total[0] += output.numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 3, height, width))
    for handle in handles:
        handle.remove()
    return total[0] / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--detector", default="retinaface_mobilenetv2")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["auto"])
    args = parser.parse_args()
    astronaut = Image.fromarray(data.astronaut())
    square = np.asarray(astronaut.resize((SIDE, SIDE)))
    photo = np.asarray(astronaut.resize((SIDE, SIDE)).crop((0, 80, SIDE, 80 + PHOTO_HEIGHT)))
    detectors = {
        p: FaceDetector(model_name=args.detector, models_dir=Settings().models_dir, precision=p) for p in args.precision
    }
    inputs = {f"{SIDE}x{h}": torch.zeros(1, 3, h, SIDE) for h in (SIDE, PHOTO_HEIGHT)}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for precision, detector in detectors.items():
            load_before = os.getloadavg()[0]
            row: dict[str, object] = {
                "detector": args.detector,
                "precision": precision,
                "autocast": str(detector.autocast_dtype or "off"),
                "threads": threads,
                "detect_640x640": _bench(lambda d=detector: d.detect(square), args.runs),
                "detect_640x480": _bench(lambda d=detector: d.detect(photo), args.runs),
            }
            for size, tensor in inputs.items():
                row[f"network_{size}"] = _bench(
                    lambda d=detector, t=tensor: network_outputs(d.model, t, d.autocast_dtype), args.runs
                )
            row |= {
                "gmac_640x640": round(count_macs(detector.model, SIDE, SIDE), 2),
                "gmac_640x480": round(count_macs(detector.model, PHOTO_HEIGHT, SIDE), 2),
                "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "cpus": os.cpu_count(),
            }
            print(json.dumps(row))


if __name__ == "__main__":
    main()
