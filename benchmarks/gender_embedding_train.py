"""Train the embedding gender member on UTKFace's train portion and fit its ensemble gender weight.

    PYTHONPATH=. .venv/bin/python benchmarks/gender_embedding_train.py [--data ../shared/data] [--threads 2]

1. Rows of UTKFace through the full pipeline (``extract``: RetinaFace → align_face; cached in .howhot/cache/age) and
   the face embedding of each chip and its mirror (``extract_embedder``; cached beside them).
2. Logistic regression P(female | embedding) on the TRAIN portion only (``split_portion``), detected faces, face and
   mirror as two rows (the member averages both views' P(female), as ``run_member``'s flip TTA does); features
   standardised on train, L2 chosen on every 5th training face, refit on the whole train portion; the
   standardisation is folded into the committed 128 → 1 layer ``services/scoring/weights/dlib_embedding_gender.pt``.
3. Gender weights of the default profile's mix (CC0 gender net, WRN, this member) by log loss on the train portion,
   with this member's train P(female) taken out-of-fold (5 folds) so it is not over-trusted; written as
   ``services/scoring/calibration/default-embedding-gender.json`` (= default.json with the new gender weights and the
   member in ``flip_members``; the age part is untouched). The held-out portion is never used here: measure with
   ``howhot eval age --dataset ../shared/data/utkface --portion heldout --calibration <that file>``.
4. ``--promote`` (after measuring): no training; the candidate's held-out UTKFace figures (``evaluate_age``) go into
   its ``metrics`` and the candidate becomes ``default.json`` (the shipped default profile).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from libs.common.modelcache import sha256_file  # noqa: E402
from libs.common.modelcard import ModelCard  # noqa: E402
from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.ensemble import CALIBRATION_DIR, EnsembleCalibration, load_calibration  # noqa: E402
from services.scoring.evaluation.data import read_age_samples, split_portion  # noqa: E402
from services.scoring.evaluation.detection import provide_detector  # noqa: E402
from services.scoring.evaluation.extract import EMBEDDING_KEY, extract, extract_embedder  # noqa: E402
from services.scoring.models.embedding_gender import HEAD_FILE, NAME, head_state  # noqa: E402
from services.scoring.models.registry import pretrained_config  # noqa: E402
from services.scoring.training.logistic import logistic_fit  # noqa: E402
from services.scoring.training.member import committed_head_path  # noqa: E402

L2_GRID = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FOLDS = 5
WEIGHT_STEP = 0.05  # the gender-weight simplex grid (fit_ensemble uses 0.05 steps for two members)
CC0, WRN = "agegender_cc0_gender", "wrn16_8_imdbwiki"
OUT_CALIBRATION = CALIBRATION_DIR / "default-embedding-gender.json"
HELDOUT_ACCURACY_BEFORE = 0.9175946547884187  # default.json before this member (benchmarks/results/age_calibration.md)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def two_view_fit(emb: np.ndarray, mirror: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Fit on face and mirror as two rows each (raw embedding space: standardisation folded into w, b)."""
    x = np.concatenate([emb, mirror])
    mean, std = x.mean(0), x.std(0) + 1e-8
    w, b = logistic_fit((x - mean) / std, np.concatenate([y, y]), l2)
    return w / std, b - float((mean / std) @ w)


def two_view_p(w: np.ndarray, b: float, emb: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The member's P(female): the mean over face and mirror (flip TTA)."""
    return (sigmoid(emb @ w + b) + sigmoid(mirror @ w + b)) / 2


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p > 0.5) == (y > 0.5)))


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def promote(folder: Path) -> None:
    """Held-out UTKFace figures of the candidate into its metrics; the candidate becomes default.json."""
    from services.scoring.eval_age import evaluate_age

    candidate = EnsembleCalibration.load(OUT_CALIBRATION)
    summary = evaluate_age(folder, portion="heldout", calibration_path=OUT_CALIBRATION, progress=False).summary
    heldout = dict(candidate.metrics.get("utk-heldout", {}))
    heldout.update(ensemble_gender_acc=summary["gender_accuracy"], member_gender_acc=summary["gender_member_accuracy"],
                   ensemble_mae=summary["mae"], n=summary["images"])
    candidate.metrics = {**candidate.metrics, "utk-heldout": heldout}
    candidate.save(OUT_CALIBRATION)
    candidate.save(CALIBRATION_DIR / "default.json")
    card_file = committed_head_path(f"{NAME}.card.json")
    card = ModelCard.load(card_file)
    card.expected_accuracy["utkface_heldout"] = {
        "n": summary["images"], "member_accuracy": summary["gender_member_accuracy"].get(NAME),
        "ensemble_accuracy_default_profile": summary["gender_accuracy"],
        "ensemble_accuracy_before": HELDOUT_ACCURACY_BEFORE,
    }
    card.save(card_file)
    print(json.dumps(heldout, indent=2))
    print(f"wrote {OUT_CALIBRATION} and {CALIBRATION_DIR / 'default.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--promote", action="store_true", help="measure the candidate, make it default.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    provide_detector(FaceDetector.from_settings)  # used only where the age cache misses an image
    folder = args.data / "utkface"
    if args.promote:
        promote(folder)
        return
    samples = [s for s in read_age_samples(folder, "age", "train") if s.female is not None]
    assert all(split_portion(s.file) == "train" for s in samples)
    rows = extract_embedder(samples, extract(samples, folder, "detect"), folder)
    keep = [i for i, s in enumerate(samples) if bool(rows[s.file]["detected"])]
    samples = [samples[i] for i in keep]
    emb = np.stack([rows[s.file][EMBEDDING_KEY] for s in samples]).astype(np.float64)
    mirror = np.stack([rows[s.file][f"{EMBEDDING_KEY}_flip"] for s in samples]).astype(np.float64)
    y = np.array([s.female for s in samples], dtype=np.float64)
    n = len(y)

    inner_val = np.zeros(n, bool)
    inner_val[::5] = True
    scores = {}
    for l2 in L2_GRID:
        w, b = two_view_fit(emb[~inner_val], mirror[~inner_val], y[~inner_val], l2)
        scores[l2] = log_loss(two_view_p(w, b, emb[inner_val], mirror[inner_val]), y[inner_val])
    l2 = min(scores, key=lambda k: scores[k])
    oof = np.zeros(n)
    for fold in range(FOLDS):
        held = np.arange(n) % FOLDS == fold
        w, b = two_view_fit(emb[~held], mirror[~held], y[~held], l2)
        oof[held] = two_view_p(w, b, emb[held], mirror[held])
    w, b = two_view_fit(emb, mirror, y, l2)
    head = committed_head_path(HEAD_FILE)
    torch.save(head_state(torch.from_numpy(w), torch.tensor([b])), head)

    # gender weights over (CC0, WRN, embedding) on the train rows, the embedding member out-of-fold
    base = load_calibration("default")
    flips = set(base.flip_members) | {NAME}
    member_p = {
        CC0: np.array([(float(rows[s.file][f"{CC0}.p_female"]) + float(rows[s.file][f"{CC0}.p_female_flip"])) / 2
                       if CC0 in flips else float(rows[s.file][f"{CC0}.p_female"]) for s in samples]),
        WRN: np.array([float(rows[s.file][f"{WRN}.p_female"]) for s in samples]),
        NAME: oof,
    }
    grid = np.round(np.arange(0.0, 1.0 + WEIGHT_STEP / 2, WEIGHT_STEP), 2)
    best: tuple[float, dict[str, float]] | None = None
    for a, c in itertools.product(grid, grid):
        if a + c > 1.0 + 1e-9:
            continue
        weights = {CC0: float(a), WRN: float(c), NAME: float(round(1.0 - a - c, 2))}
        loss = log_loss(sum(member_p[m] * wt for m, wt in weights.items()), y)
        if best is None or loss < best[0]:
            best = (loss, weights)
    assert best is not None
    gender_weights = {m: wt for m, wt in best[1].items() if wt > 0}
    calibration = EnsembleCalibration.from_dict({
        **json.loads(base.to_json()), "gender_weights": gender_weights, "flip_members": sorted(flips),
        "fitted_on": base.fitted_on + f"; gender weights with {NAME} refitted by log loss on the UTKFace train "
        f"portion ({n} detected faces, {NAME} out-of-fold) by benchmarks/gender_embedding_train.py",
    })
    calibration.save(OUT_CALIBRATION)

    report = {
        "train_faces": n, "l2_inner_val_log_loss": scores, "l2": l2,
        "train_accuracy_in_sample": accuracy(two_view_p(w, b, emb, mirror), y),
        "train_accuracy_out_of_fold": accuracy(oof, y),
        "train_accuracy_members": {CC0: accuracy(member_p[CC0], y), WRN: accuracy(member_p[WRN], y)},
        "gender_weights": gender_weights, "gender_weights_train_log_loss": best[0],
        "shipped_mix_train_accuracy": accuracy(sum(member_p[m] * wt for m, wt in base.gender_weights.items()), y),
        "new_mix_train_accuracy_oof": accuracy(sum(member_p[m] * wt for m, wt in gender_weights.items()), y),
        "head_sha256": sha256_file(head),
    }
    card = pretrained_config(NAME).card(sha256=sha256_file(head), expected_accuracy={
        "utkface_train_portion": {k: report[k] for k in ("train_faces", "train_accuracy_out_of_fold",
                                                          "train_accuracy_in_sample")},
        "see": "benchmarks/results/gender_embedding.md (held-out figures via howhot eval age)",
        "training": "PYTHONPATH=. .venv/bin/python benchmarks/gender_embedding_train.py",
    })
    card.save(committed_head_path(f"{NAME}.card.json"))
    out = REPO / ".howhot" / "results" / "gender_embedding_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {head}, {OUT_CALIBRATION}, {out}")


if __name__ == "__main__":
    main()
