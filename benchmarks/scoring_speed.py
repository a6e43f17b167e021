"""Faces per second through the whole scoring ensemble (crops + every member + combination), and peak RSS.

    .venv/bin/python benchmarks/scoring_speed.py --threads 2 --repeats 5 --out benchmarks/results/scoring_speed.md

For each batch size (1, 8, 32) the scorer scores ``max(batch, 32)`` faces per run; the figure is the median over
``--repeats`` runs after warm-up. Peak RSS comes from ``resource.getrusage`` (the whole process, models included).
Chips are synthetic 256×256 noise with template landmarks: speed does not depend on the face.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE  # noqa: E402
from services.scoring.scorer import FaceScorer  # noqa: E402

FACES_PER_RUN = 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast for the WRN on CPU")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scorer = FaceScorer(profile=args.profile, device="cpu", cpu_bf16=not args.fp32)
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, size=(CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(FACES_PER_RUN)]
    landmarks = [CHIP_TEMPLATE.copy() for _ in chips]
    rows = []
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        n = max(batch, FACES_PER_RUN)
        scorer.score_batch(chips[:batch], landmarks[:batch])  # warm this shape
        rates, cpu_rates = [], []
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            for start in range(0, n, batch):
                scorer.score_batch(chips[start % FACES_PER_RUN:][:batch], landmarks[:batch])
            rates.append(n / (time.perf_counter() - started))
            cpu_rates.append(n / (time.process_time() - cpu_started) * args.threads)
        rows.append((batch, statistics.median(rates), min(rates), max(rates), statistics.median(cpu_rates)))
        print(f"batch {batch}: median {rows[-1][1]:.1f} faces/s (min {rows[-1][2]:.1f}, max {rows[-1][3]:.1f}); "
              f"CPU-time estimate for {args.threads} uncontended cores {rows[-1][4]:.1f} faces/s", flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"peak RSS {rss_mb:.0f} MB; load average {load[0]:.1f}")
    if args.out:
        command = "PYTHONPATH=. .venv/bin/python benchmarks/scoring_speed.py " + " ".join(sys.argv[1:])
        lines = [
            "# Scoring ensemble speed (CPU)", "",
            f"Command: `{command}`", "",
            f"Profile `{args.profile}`, members {sorted(scorer.models)}, "
            f"flip TTA for {scorer.calibration.flip_members}, WRN {'fp32' if args.fp32 else 'bf16 autocast'}, "
            f"torch {torch.__version__}, {args.threads} threads, "
            f"{platform.processor() or platform.machine()}; load average at the end {load[0]:.1f} "
            "(the machine is shared: other processes compete for the 2 cores).", "",
            "| batch | faces/s (median, wall clock) | min | max | faces/s if the cores were ours (CPU time) |",
            "|---|---|---|---|---|",
            *[f"| {b} | {m:.1f} | {lo:.1f} | {hi:.1f} | {c:.1f} |" for b, m, lo, hi, c in rows], "",
            "The last column is faces per CPU-second × threads: what the wall clock would show without other "
            "processes on the machine (an upper estimate: it assumes both threads stay busy).", "",
            f"Peak RSS of the process (resource.getrusage): {rss_mb:.0f} MB.", "",
        ]
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
