"""Faces per second through the whole scoring ensemble (crops + every member + combination), and peak RSS.

    .venv/bin/python benchmarks/scoring_speed.py --threads 2 --repeats 5 --out benchmarks/results/scoring_speed.md
    # the service's whole per-batch path: ensemble + attractiveness (both face embeddings) + personal vectors
    .venv/bin/python benchmarks/scoring_speed.py --threads 2 --repeats 5 --service \
        --out benchmarks/results/scoring_speed_service.md
    # on a GPU machine (bf16 autocast for every member; the peak is looked up from the device name or given)
    .venv/bin/python benchmarks/scoring_speed.py --device cuda --batch-sizes 32,64,128,256 [--compile] \
        --out benchmarks/results/scoring_speed_gpu.md
    # on a lent GPU machine that has no model cache: benchmarks/gpu_checks.sh (untrained weights, same networks)

For each batch size the scorer scores ``max(batch, 32)`` faces per run; the figure is the median over ``--repeats``
runs after warm-up. Peak RSS comes from ``resource.getrusage`` (the whole process, models included). Chips are
synthetic 256×256 noise with template landmarks: speed does not depend on the face. The network work per face is
counted once with ``torch.utils.flop_counter`` (every member's convolutions and matmuls, mirror passes included), so
faces/s × FLOP/face is the throughput the ensemble reaches, compared with the device's dense bf16 peak.

``--service`` times ``services.scoring.app.ScoringModels.score`` instead: the ensemble, the attractiveness head with
the feature sources it reads (the face embeddings run once per adult face) and the shipped personalization model's
face vectors, i.e. everything the scoring service does per micro-batch. The minors rule is switched off for the
measurement (noise chips would otherwise be withheld and skip the attractiveness work); FLOPs are counted on the
same path.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE  # noqa: E402
from services.scoring.scorer import FaceScorer  # noqa: E402

NO_MINORS = 1.01  # a P(age < 18) threshold no face exceeds: every face gets the attractiveness work

FACES_PER_RUN = 32
BF16_PEAK_TFLOPS = {  # dense bf16 tensor-core peaks (vendor data sheets), matched against the CUDA device name
    "H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
}


def device_peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak from its name (None for CPUs and unknown GPUs: pass ``--peak-tflops``)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def networks_only_rate(scorer: FaceScorer, batch: int, repeats: int) -> float:
    """Median faces/s of the members' forward passes alone on inputs already on the device (mirrors included):
    what the accelerator does, without the CPU's crop warping and result handling."""
    from services.scoring.members import to_input

    flips = set(scorer.calibration.flip_members)
    inputs = {name: to_input(cfg, np.zeros((batch, cfg.input_size, cfg.input_size, 3), np.uint8),
                             name in flips).to(scorer.device) for name, cfg in scorer.configs.items()}

    def one_pass() -> None:
        for name, x in inputs.items():
            dtype = scorer.autocast[name]
            with torch.inference_mode(), torch.autocast(scorer.device.type, dtype=dtype or torch.bfloat16,
                                                          enabled=dtype is not None):
                scorer.models[name](x)
        if scorer.device.type == "cuda":
            torch.cuda.synchronize(scorer.device)

    one_pass()
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        one_pass()
        rates.append(batch / (time.perf_counter() - started))
    return statistics.median(rates)


def flops_per_face(score: Callable[[list, list], object], chips: list, landmarks: list) -> float:
    """Convolution and matmul FLOPs of one scoring pass (``score(chips, landmarks)``), per face."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        score(chips, landmarks)
    return counter.get_total_flops() / len(chips)


def service_path(scorer: FaceScorer, profile: str) -> Callable[[list, list], object]:
    """``score(chips, landmarks)`` through the service's ScoringModels (minors rule off, see the docstring)."""
    from services.scoring.app import ScoringModels
    from services.scoring.attractiveness import Attractiveness
    from services.scoring.features_store import personal_members
    from services.scoring.personalize.model import PersonalModel
    from services.scoring.ratings_consumer import DEFAULT_MODEL_PATH

    personal = PersonalModel.load(DEFAULT_MODEL_PATH)
    beauty = Attractiveness.load(profile, NO_MINORS, extra_members=personal_members(personal))
    models = ScoringModels(scorer, beauty, personal)
    return lambda chips, landmarks: models.score(list(zip(chips, landmarks, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast for the WRN on CPU")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile every member")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 peak (default: looked up for GPUs)")
    parser.add_argument("--service", action="store_true",
                        help="time the service's whole per-batch path (attractiveness + personal vectors too)")
    parser.add_argument("--random-weights", action="store_true",
                        help="untrained weights in the same networks (same FLOPs and speed, no model cache needed: "
                             "benchmarks/gpu_checks.sh on a lent GPU)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.service and args.random_weights:
        parser.error("--service needs the trained heads and the model cache: leave out --random-weights")
    pretrained = not args.random_weights
    scorer = FaceScorer(profile=args.profile, device=args.device, cpu_bf16=not args.fp32, compile=args.compile,
                        pretrained=pretrained)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 255, size=(CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
             for _ in range(max(FACES_PER_RUN, *batches))]
    landmarks = [CHIP_TEMPLATE.copy() for _ in chips]
    counted = scorer if not args.compile else FaceScorer(profile=args.profile, device=args.device,
                                                         cpu_bf16=not args.fp32, pretrained=pretrained)  # eager FLOPs
    flops = flops_per_face(service_path(counted, args.profile) if args.service else counted.score_batch,
                           chips[:8], landmarks[:8])
    del counted
    score = service_path(scorer, args.profile) if args.service else scorer.score_batch
    peak = args.peak_tflops or device_peak_tflops(scorer.device)
    print(f"{flops / 1e9:.2f} GFLOP per face on {scorer.device}; bf16 peak {peak or 'unknown'} TFLOP/s", flush=True)
    rows = []
    for batch in batches:
        n = max(batch, FACES_PER_RUN)
        score(chips[:batch], landmarks[:batch])  # warm this shape
        rates, cpu_rates = [], []
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            for start in range(0, n, batch):
                score(chips[start % len(chips):][:batch], landmarks[:batch])
            rates.append(n / (time.perf_counter() - started))
            cpu_rates.append(n / (time.process_time() - cpu_started) * args.threads)
        rows.append((batch, statistics.median(rates), min(rates), max(rates), statistics.median(cpu_rates),
                     networks_only_rate(scorer, batch, args.repeats)))
        achieved = rows[-1][1] * flops / 1e12
        share = f", {100 * achieved / peak:.2f} % of the bf16 peak" if peak else ""
        print(f"batch {batch}: median {rows[-1][1]:.1f} faces/s (min {rows[-1][2]:.1f}, max {rows[-1][3]:.1f}); "
              f"CPU-time estimate for {args.threads} uncontended cores {rows[-1][4]:.1f} faces/s; "
              f"{achieved:.3f} TFLOP/s{share}; networks alone {rows[-1][5]:.1f} faces/s "
              f"({rows[-1][5] * flops / 1e12:.3f} TFLOP/s)", flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    print(f"peak RSS {rss_mb:.0f} MB; load average {load[0]:.1f}")
    if args.out:
        command = "PYTHONPATH=. .venv/bin/python benchmarks/scoring_speed.py " + " ".join(sys.argv[1:])
        lines = [
            f"# Scoring {'service path' if args.service else 'ensemble'} speed ({scorer.device})", "",
            f"Command: `{command}`", "",
            f"Profile `{args.profile}`, members {sorted(scorer.models)}, "
            f"flip TTA for {scorer.calibration.flip_members}, WRN {'fp32' if args.fp32 else 'bf16 autocast'}, "
            f"torch {torch.__version__}, {args.threads} threads, "
            f"{platform.processor() or platform.machine()}"
            f"{', ' + torch.cuda.get_device_name(scorer.device) if scorer.device.type == 'cuda' else ''}"
            f"{', torch.compile' if args.compile else ''}"
            f"{', untrained weights (--random-weights: the same networks and FLOPs)' if args.random_weights else ''}"
            f"; load average at the end {load[0]:.1f} "
            "(the machine is shared: other processes compete for the cores).", "",
            *(["Service path: `ScoringModels.score` with the profile's attractiveness head and the shipped "
               "personalization model (face vectors); the minors rule is off so every face does that work.", ""]
              if args.service else []),
            f"Network work: {flops / 1e9:.2f} GFLOP per face (torch.utils.flop_counter, one pass of batch 8); "
            f"bf16 peak used for the % columns: {peak or 'unknown'} TFLOP/s.", "",
            "| batch | faces/s (median, wall clock) | min | max | faces/s if the cores were ours (CPU time) "
            "| TFLOP/s reached | % of bf16 peak | networks alone: faces/s | networks alone: % of bf16 peak |",
            "|---|---|---|---|---|---|---|---|---|",
            *[f"| {b} | {m:.1f} | {lo:.1f} | {hi:.1f} | {c:.1f} | {m * flops / 1e12:.3f} | "
              f"{f'{100 * m * flops / 1e12 / peak:.2f}' if peak else '–'} | {net:.1f} | "
              f"{f'{100 * net * flops / 1e12 / peak:.2f}' if peak else '–'} |" for b, m, lo, hi, c, net in rows], "",
            "Networks alone: the members' forward passes on inputs already on the device, without the CPU's crop "
            "warping and result handling (the whole-path columns include them).", "",
            "The CPU-time column is faces per CPU-second × threads: what the wall clock would show without other "
            "processes on the machine (an upper estimate: it assumes both threads stay busy).", "",
            f"Peak RSS of the process (resource.getrusage): {rss_mb:.0f} MB.", "",
        ]
        args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
