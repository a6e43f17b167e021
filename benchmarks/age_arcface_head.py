"""An age member from InsightFace's MobileFaceNet feature map: alone and inside the refitted ensemble (experiment).

    PYTHONPATH=. .venv/bin/python benchmarks/age_arcface_head.py [--degrade]

Question: the ArcFace net's last 512×7×7 map predicts rated attractiveness much better than its embedding
(beauty.md, v3). Does it carry age too? K = 5 DEX heads (``training.fit_heads.train_heads``: bootstrap bags, Gaussian
label distributions σ = 2 y, best out-of-bag epoch) on the map's global mean + 2×2 grid (``features.arcface_features``
of the face pipeline's chips, cut from the age cache's landmarks: ``.howhot/cache/age``, filled by
``howhot eval age``), trained on UTKFace's train portion. ``--degrade``: each training face also has a degraded copy
(random down-scaling to 48–160 px and back, grey or sepia, lower contrast, JPEG 20–70) that replaces it in half of
the batches, to make the head robust to old scanned photos like FG-NET's. Then the ensemble is refitted on the train
rows exactly as benchmarks/age_fit_calibration.py fits the shipped one (out-of-bag rows for the head), without and
with the head, and measured on UTKFace held-out and all of FG-NET. ``--gate``: a logistic classifier on the same
map features, trained on UTKFace train faces (0) against their degraded copies (1) only, gives P(old-looking photo);
the gated prediction is P · (published ensemble) + (1 − P) · (ensemble with the head), one row per L2 strength
(FG-NET never trains or selects anything). Features are cached in
``.howhot/cache/age/arcface_*.npz``. Prints a Markdown table; nothing in the service changes.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from age_fit_calibration import AFFINE_MEMBERS, FLIP_MEMBERS, cached_set, subset  # noqa: E402

from services.scoring.beauty.chips import load_rgb  # noqa: E402
from services.scoring.beauty.features import ARCFACE, arcface_features  # noqa: E402
from services.scoring.chipsource import chip_from_landmarks  # noqa: E402
from services.scoring.ensemble import combine, fit_ensemble  # noqa: E402
from services.scoring.evaluation.metrics import AGE_BANDS, age_band, group_mae, mae  # noqa: E402
from services.scoring.evaluation.predict import member_outputs  # noqa: E402
from services.scoring.members import MemberOutput  # noqa: E402
from services.scoring.models.arcface_registry import arcface_model  # noqa: E402
from services.scoring.training.fit_heads import out_of_bag_probs, predict_probs, train_heads  # noqa: E402
from services.scoring.training.heads import AGE_VALUES, HeadSpec  # noqa: E402
from services.scoring.training.logistic import logistic_fit  # noqa: E402

PUBLISHED = ["wrn16_8_imdbwiki", "agegender_cc0_age", "agegender_cc0_gender"]
TRIAL = "arcface_age_head"
GATE_L2 = (1e-4, 1e-3, 1e-2, 1e-1)  # the gate's L2 strengths, all reported: none is chosen on FG-NET
BLOCKS = (f"{ARCFACE}.final_gap", f"{ARCFACE}.final_grid")
CACHE = REPO / ".howhot" / "cache" / "age"
BATCH = 64


def degrade(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An old-photo version of a 256-px chip: low resolution, grey or sepia, flat contrast, heavy JPEG."""
    image = Image.fromarray(chip)
    side = int(rng.uniform(48, 160))
    image = image.resize((side, side), Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)
    if rng.random() < 0.3:
        image = image.convert("L").convert("RGB")
    elif rng.random() < 0.3:
        rgb = np.asarray(image).astype(np.float64)
        sepia = 0.5 * rgb + 0.5 * rgb.mean(2, keepdims=True) * np.array([1.1, 0.95, 0.75])
        image = Image.fromarray(np.clip(sepia, 0, 255).astype(np.uint8))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.6, 1.2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.uniform(20, 70)))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def map_features(name: str, samples: list, rows: list, model: torch.nn.Module, degraded: bool) -> np.ndarray:
    """[N, 2560] map features (global mean + 2×2 grid) of the samples' chips, cached per set and variant."""
    path = CACHE / f"arcface_{name}{'_degraded' if degraded else ''}.npz"
    files = [s.file for s in samples]
    if path.exists():
        with np.load(path) as data:
            if list(data["files"]) == files:
                return data["x"]
    rng = np.random.default_rng(0)
    parts = []
    for start in tqdm(range(0, len(samples), BATCH), desc=path.stem, unit="batch"):
        chips = [chip_from_landmarks(load_rgb(Path(s.path)), r["landmarks"])[0]
                 for s, r in zip(samples[start:start + BATCH], rows[start:start + BATCH], strict=True)]
        if degraded:
            chips = [degrade(c, rng) for c in chips]
        blocks = arcface_features(model, chips)
        parts.append(np.hstack([blocks[b] for b in BLOCKS]))
    x = np.concatenate(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, files=np.array(files), x=x)
    return x


def bands(pred: np.ndarray, ages: np.ndarray) -> str:
    table = group_mae(pred - ages, [age_band(a) for a in ages], [b[0] for b in AGE_BANDS])
    return " / ".join(f"{table[b[0]]['mae']:.2f}" for b in AGE_BANDS if b[0] in table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--degrade", action="store_true", help="train with degraded copies (old-photo robustness)")
    parser.add_argument("--gate", action="store_true", help="also gate the head by P(degraded photo), see above")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    sets = {"train": cached_set("utkface", "age", "train"), "heldout": cached_set("utkface", "age", "heldout"),
            "fgnet": cached_set("fgnet", "real_age", "all")}
    model = arcface_model()
    x = {name: map_features(name, *sets[name], model, False) for name in sets}
    ages = {name: np.array([s.age for s in samples], dtype=np.float64) for name, (samples, _) in sets.items()}
    female = {name: np.array([np.nan if s.female is None else s.female for s in samples])
              for name, (samples, _) in sets.items()}
    degraded = map_features("train", *sets["train"], model, True) if args.degrade or args.gate else None
    flipped = degraded if args.degrade else None
    spec = HeadSpec(ARCFACE, "final", relu=False, pooling="grid", in_features=x["train"].shape[1], dropout=0.2,
                    members=5, label_sigma=2.0)
    result = train_heads(x["train"], ages["train"], spec, flipped=flipped, epochs=args.epochs, log=print)
    probs = {"train": out_of_bag_probs(result.ensemble, x["train"], result.bags),
             **{name: predict_probs(result.ensemble, x[name]) for name in ("heldout", "fgnet")}}
    scored = ~np.isnan(probs["train"]).any(axis=1)
    probs["train"] = np.nan_to_num(probs["train"])
    print(f"\n| ensemble | UTKFace held-out MAE | FG-NET MAE | UTK by band ({', '.join(b[0] for b in AGE_BANDS)}) "
          "| FG-NET by band |")
    print("|---|---|---|---|---|")
    head_pred = {name: probs[name] @ AGE_VALUES for name in ("heldout", "fgnet")}
    print(f"| the ArcFace head alone | {mae(head_pred['heldout'], ages['heldout']):.3f} | "
          f"{mae(head_pred['fgnet'], ages['fgnet']):.3f} | {bands(head_pred['heldout'], ages['heldout'])} | "
          f"{bands(head_pred['fgnet'], ages['fgnet'])} |")
    ensemble_pred = {}
    for label, trial in (("published members (as shipped)", False), ("published + ArcFace head", True)):
        outputs = {}
        for name, (_, rows) in sets.items():
            outputs[name] = member_outputs(rows, PUBLISHED, FLIP_MEMBERS)
            if trial:
                outputs[name][TRIAL] = MemberOutput(TRIAL, "trial", AGE_VALUES, probs[name], None)
        keep = scored & np.array([bool(r["detected"]) for r in sets["train"][1]])
        cal = fit_ensemble(subset(outputs["train"], keep), ages["train"][keep], female["train"][keep],
                           flip_members=[], affine_members=AFFINE_MEMBERS, trial_members=[TRIAL])
        pred = ensemble_pred[trial] = {name: combine(outputs[name], cal).age for name in ("heldout", "fgnet")}
        print(f"| {label} | {mae(pred['heldout'], ages['heldout']):.3f} | {mae(pred['fgnet'], ages['fgnet']):.3f} | "
              f"{bands(pred['heldout'], ages['heldout'])} | {bands(pred['fgnet'], ages['fgnet'])} |")
    if degraded is not None and args.gate:
        for l2, gate in gates(x, degraded).items():
            pred = {n: gate[n] * ensemble_pred[False][n] + (1 - gate[n]) * ensemble_pred[True][n]
                    for n in ("heldout", "fgnet")}
            print(f"| gated by P(degraded), L2 {l2:g} (flagged: UTK {np.mean(gate['heldout'] > 0.5):.0%}, FG-NET "
                  f"{np.mean(gate['fgnet'] > 0.5):.0%}) | {mae(pred['heldout'], ages['heldout']):.3f} | "
                  f"{mae(pred['fgnet'], ages['fgnet']):.3f} | {bands(pred['heldout'], ages['heldout'])} | "
                  f"{bands(pred['fgnet'], ages['fgnet'])} |")
    print(f"\ndegraded training copies: {args.degrade}; gate: {args.gate}; epochs {args.epochs}")


def gates(x: dict[str, np.ndarray], degraded: np.ndarray) -> dict[float, dict[str, np.ndarray]]:
    """Per L2 strength, P(degraded) of every set's faces from a logistic fit on UTK train clean vs degraded only."""
    both = np.vstack([x["train"], degraded]).astype(np.float64)
    target = np.r_[np.zeros(len(x["train"])), np.ones(len(degraded))]
    mean, std = both.mean(0), both.std(0) + 1e-6
    out = {}
    for l2 in GATE_L2:
        w, b = logistic_fit((both - mean) / std, target, l2)
        out[l2] = {n: 1 / (1 + np.exp(-(((v - mean) / std) @ w + b))) for n, v in x.items()}
    return out


if __name__ == "__main__":
    main()
