"""Age MAE with the detector in bf16 (what the face service runs on bf16-capable CPUs) beside the fp32 reference.

The evaluation tools detect in fp32 so their caches and figures do not depend on the CPU; the served pipeline detects
in bf16 where the CPU has it, which moves landmarks by ~1 % of the eye distance (face_precision_shift.py). This runs
the whole age evaluation again with a bf16 detector into its own cache, so both figures sit side by side.

    .venv/bin/python benchmarks/age_detector_precision.py --dataset ../shared/data/fgnet --target real_age
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.eval_age import evaluate_age  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--target", default="age")
    parser.add_argument("--portion", default="all")
    args = parser.parse_args()
    figures = {}
    for precision in ("fp32", "bf16"):
        provide_detector(lambda precision=precision: FaceDetector.from_settings(precision=precision))
        # fp32 reads the shared evaluation cache (the committed figures); bf16 gets a cache of its own
        cache = None if precision == "fp32" else Path(tempfile.mkdtemp(prefix="howhot-bf16-age-"))
        summary = evaluate_age(args.dataset, args.target, portion=args.portion, cache_dir=cache).summary
        figures[precision] = {k: summary.get(k) for k in ("n", "failures", "mae", "gender_accuracy", "member_mae")}
    print(json.dumps(figures, indent=2, default=float))


if __name__ == "__main__":
    main()
