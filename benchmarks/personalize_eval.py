"""Cold-start personalisation benchmark: reveal k ratings per rater, predict their ratings of unseen faces.

    PYTHONPATH=. .venv/bin/python benchmarks/personalize_eval.py [--datasets frl_london mebeauty] [--max-raters N]

Needs the feature cache (benchmarks/beauty_features.py) and, for the FRL "global head" rows, the committed beauty
head (benchmarks/beauty_train.py). Prints one markdown table per data set and writes
.howhot/results/personalize_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.evaluation.detection import provide_detector  # noqa: E402
from services.scoring.personalize.evaluate import evaluate_personalization  # noqa: E402

LABELS = {
    "oracle": "ORACLE: face's mean rating by all other raters",
    "global_head": "global visual: MEBeauty head score",
    "global_visual": "global visual: μ + b_i regressed from pixels",
    "rater_mean": "rater-mean baseline (constant per rater)",
    "visual_knn": "visual kNN of the rater's own k ratings",
    "personal_no_demo": "personalised visual model (population prior)",
    "personal_demo_prior": "personalised visual model + raters.csv prior",
    "personal_picked": "personalised + prior, k faces chosen by the picker",
}


def table(res: dict) -> str:
    ks = [str(k) for k in res["ks"]]
    head = "| method | " + " | ".join(f"k={k} r / acc" for k in ks) + " |"
    lines = [head, "|---|" + "---|" * len(ks)]
    labels = dict(LABELS)
    for m in res.get("warm", []):
        labels[f"global_warm_{m}"] = f"warm face, global (μ + b_i after {m} other raters' ratings)"
        labels[f"crowd_warm_{m}"] = f"warm face, visitors' score as served (average rater, {m} ratings)"
        labels[f"personal_warm_{m}"] = f"warm face, personalised + prior ({m} other raters' ratings of the face)"
    for method, label in labels.items():
        if method not in res["methods"]:
            continue
        cells = []
        for k in ks:
            m = res["methods"][method].get(k)
            cells.append("–" if m is None else f"{m['pearson']:.3f} / {m['hot_or_not_acc']:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=["frl_london", "mebeauty"])
    parser.add_argument("--ks", nargs="+", type=int, default=[0, 5, 10, 20])
    parser.add_argument("--warm", nargs="*", type=int, default=[],
                        help="warm-face rows: each predicted face first gets this many other raters' ratings")
    parser.add_argument("--max-raters", type=int, default=None, help="evaluate a random subset of raters")
    parser.add_argument("--block-set", default="all")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--reg", type=float, default=5.0)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # used only where the landmark cache misses
    out = REPO / ".howhot" / "results" / "personalize_eval.json"  # raw numbers; figures: personalize.md
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    for name in args.datasets:
        start = time.time()
        res = evaluate_personalization(args.data / name, ks=tuple(args.ks), max_raters=args.max_raters,
                                       block_set=args.block_set, rank=args.rank, reg=args.reg, warm=tuple(args.warm))
        res["seconds"] = round(time.time() - start, 1)
        results[name] = res
        print(f"\n### {name}: {res['evaluated_raters']} raters evaluated of {res['raters']}, {res['faces']} faces, "
              f"{res['folds']}x{res['folds']} rater x face folds, rank {res['rank']} ({res['seconds']}s)\n")
        print(table(res))
        out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
