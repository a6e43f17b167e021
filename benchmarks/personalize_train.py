"""Fit and commit the personalisation model on every rating of a data set (after evaluating it separately).

    PYTHONPATH=. .venv/bin/python benchmarks/personalize_train.py [--dataset frl_london] [--block-set all]

Writes services/scoring/weights/personal_<dataset>.npz and its .card.json. On FRL London the MEBeauty beauty head's
score is a feature (it must exist: run benchmarks/beauty_train.py first) and raters.csv gives the demographic prior.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from libs.common.modelcache import sha256_file  # noqa: E402
from libs.common.modelcard import ModelCard  # noqa: E402
from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.beauty.features import stack_blocks  # noqa: E402
from services.scoring.beauty.scorer import DEFAULT_HEAD, WEIGHTS_DIR, load_beauty_head  # noqa: E402
from services.scoring.beauty.train import BLOCK_SETS  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402
from services.scoring.personalize.data import load_ratings  # noqa: E402
from services.scoring.personalize.evaluate import GLOBAL_SCORE_WEIGHT, face_features  # noqa: E402
from services.scoring.personalize.model import fit_display_map, fit_personal_model  # noqa: E402

CARD_VERSION = "4"  # 1: member blocks; 2: + the dlib face embedding block and the embedding-based global head;
# 3: + the item map's residual variance per output (the prior of a face's vector once visitors rate it);
# 4: + the display map onto the global score's scale (fit_display_map)
DATA_LICENCES = {
    "frl_london": "Face Research Lab London Set, CC BY 4.0 (DeBruine & Jones 2017, doi:10.6084/m9.figshare.5047666.v5)",
    "mebeauty": "MEBeauty, no licence stated: non-commercial research only",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--dataset", default="frl_london")
    parser.add_argument("--block-set", default="all")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--reg", type=float, default=5.0)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # used only where the landmark cache misses
    folder = args.data / args.dataset
    data = load_ratings(folder)
    use_head = args.dataset != "mebeauty"  # on MEBeauty the head saw these faces' means: it would be over-trusted
    head = load_beauty_head(DEFAULT_HEAD)[0] if use_head else None
    blocks, x, weights = face_features(folder, data.faces, args.block_set,
                                       extra_blocks=head.blocks if head is not None else ())
    if head is not None:
        x = np.hstack([x, head.predict(stack_blocks(blocks, head.blocks))[0][:, None]])
        weights = np.append(weights, GLOBAL_SCORE_WEIGHT)
    model, _ = fit_personal_model(data.ratings, x, data.scale, data.demographics, args.rank, args.reg,
                                   name=f"personal_{args.dataset}", column_weights=weights)
    model.blocks = list(BLOCK_SETS[args.block_set])
    model.global_score_weight = GLOBAL_SCORE_WEIGHT if use_head else 0.0
    if head is not None:  # personal and visitors' scores read on the global score's scale (same faces)
        model.display_slope, model.display_offset = fit_display_map(np.nanmean(data.ratings, axis=0), x[:, -1])
    name = f"personal_{args.dataset}"
    path = WEIGHTS_DIR / f"{name}.npz"
    model.save(path)
    members = sorted({b.split(".", 1)[0] for b in model.blocks})
    ModelCard(
        name=name, task="attractiveness-personalization",
        architecture=f"biased MF rank {args.rank} (ALS) + ridge features→[b_i, q_i] + Gaussian rater prior "
        f"({'demographics' if data.demographics is not None else 'population'})",
        source=f"trained by benchmarks/personalize_train.py on {args.dataset} ({len(data.raters)} raters, "
        f"{len(data.faces)} faces)",
        licence=f"Research-only: ratings {DATA_LICENCES.get(args.dataset, 'unknown')}; features from {members}"
        + (f" and the {DEFAULT_HEAD} head (research-only)" if use_head else ""),
        commercial_use=False,
        preprocessing={"blocks": model.blocks, "global_score_weight": model.global_score_weight,
                       "rating_scale": list(data.scale), "version": model.version,
                       "display_map": {"slope": round(model.display_slope, 4),
                                       "offset": round(model.display_offset, 4)}},
        expected_accuracy={"see": "benchmarks/results/personalize.md"},
        notes="Faces start as cold-start items (features only) and become warm as visitors rate them: their item "
        "vector is the posterior given those ratings, with the features' prediction as the prior. "
        "Raters: closed-form posterior after each rating; "
        f"the global score is shown until {model.min_ratings} ratings unless demographics give a prior.",
        version=CARD_VERSION, sha256=sha256_file(path),
    ).save(WEIGHTS_DIR / f"{name}.card.json")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), version {model.version}, item ridge alpha "
          f"{model.item_map.alpha:.3g}, noise var {model.noise_var:.3f}, MF train RMSE {np.sqrt(model.noise_var):.3f}")


if __name__ == "__main__":
    main()
