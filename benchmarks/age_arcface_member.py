"""Train the ArcFace age member (``dex_head_arcface``), measure it person-disjoint, and (``--write``) ship it.

    PYTHONPATH=. .venv/bin/python benchmarks/age_arcface_member.py [--folds 6] [--write]

Why FG-NET is trained on: the head of ``age_arcface_head.py``, trained on UTKFace only, takes UTKFace held-out from
5.55 to 4.79 y but loses FG-NET (old scanned photos, most of them children), and no gate learned from UTKFace alone
fixed that. The shipped calibration already learns from FG-NET's real ages, leave-one-person-out
(``age_fit_calibration.py``); here the head does too, and every FG-NET figure stays person-disjoint:
* FG-NET's 82 people are dealt into ``--folds`` groups (seeded). A group's photos are scored by heads trained on
  UTKFace's train portion, its degraded copies and every *other* group's FG-NET photos.
* The calibration is fitted as the shipped one: UTKFace train rows (the head out-of-bag) plus FG-NET, one fit per
  person without that person (the head's out-of-fold outputs as its FG-NET inputs).
* UTKFace held-out is scored by the heads trained on UTKFace train + all of FG-NET, calibrated on both.
The "published" row repeats that protocol without the head. Inputs: the ``howhot eval age`` caches of UTKFace (all)
and FG-NET (.howhot/cache/age), the ArcFace map features of the same chips (``extract_embedder(..., "arcface")``,
cached beside them) and the degraded copies of ``age_arcface_head.py`` (cached there).

``--write`` saves the heads trained on everything (services/scoring/weights/dex_head_arcface.pt, with the content
hashes of every training image, so ``howhot eval age`` can flag in-sample figures), their card, and the default
profile's calibration with the member (the age part refitted on all rows above; gender weights, flip set of the gender
members and the spread kept from the current default.json). ``age_fit_calibration.py --write`` does not know this
member: after it (and ``gender_embedding_train.py --promote``), rerun this script with ``--write``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from age_arcface_head import PUBLISHED, bands, map_features  # noqa: E402
from age_fit_calibration import AFFINE_MEMBERS, DATA, FLIP_MEMBERS, cached_set, concat, person_ids, subset  # noqa: E402

from services.scoring.ensemble import CALIBRATION_DIR, combine, fit_ensemble, load_calibration  # noqa: E402
from services.scoring.evaluation.extract import ARCFACE_KEY, extract_embedder  # noqa: E402
from services.scoring.evaluation.metrics import mae  # noqa: E402
from services.scoring.evaluation.predict import member_outputs, stacked  # noqa: E402
from services.scoring.members import MemberOutput  # noqa: E402
from services.scoring.models.arcface_age import HEAD_FILE, NAME, image_digest  # noqa: E402
from services.scoring.models.arcface_mbf import FINAL_MAP_MODULE  # noqa: E402
from services.scoring.models.arcface_registry import arcface_model  # noqa: E402
from services.scoring.training.fit_heads import out_of_bag_probs, predict_probs, train_heads  # noqa: E402
from services.scoring.training.heads import AGE_VALUES, HeadSpec, save_heads  # noqa: E402
from services.scoring.training.member import committed_head_path  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "age_arcface_member.json"


def person_folds(people: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold index of every photo: people shuffled (seeded) and dealt round-robin, so a person is in one fold."""
    unique = np.random.default_rng(seed).permutation(np.unique(people))
    fold_of = {p: i % folds for i, p in enumerate(unique)}
    return np.array([fold_of[p] for p in people])


def arcface_rows(name: str, samples: list, rows: list) -> np.ndarray:
    """[N, 2560] ArcFace map features of the cached rows' chips (as ``howhot eval age`` and the member compute them)."""
    by_file = extract_embedder(samples, {s.file: r for s, r in zip(samples, rows, strict=True)}, DATA / name,
                               "arcface")
    features = stacked([by_file[s.file] for s in samples], ARCFACE_KEY)
    assert features is not None
    return features


class Trainer:
    """Heads on UTKFace train (+ degraded copies) plus a chosen part of FG-NET."""

    def __init__(self, x: dict[str, np.ndarray], ages: dict[str, np.ndarray], degraded: np.ndarray, spec: HeadSpec,
                 epochs: int) -> None:
        self.x, self.ages, self.degraded, self.spec, self.epochs = x, ages, degraded, spec, epochs

    def train(self, fg_rows: np.ndarray) -> tuple:
        """(result, its training features): FG-NET rows have no degraded copy (they are old photos already)."""
        features = np.vstack([self.x["train"], self.x["fgnet"][fg_rows]])
        flipped = np.vstack([self.degraded, self.x["fgnet"][fg_rows]])
        result = train_heads(features, np.concatenate([self.ages["train"], self.ages["fgnet"][fg_rows]]), self.spec,
                             flipped=flipped, epochs=self.epochs, log=lambda *_: None)
        return result, features


def fit(outputs: dict, ages: np.ndarray, female: np.ndarray | None = None) -> object:
    female = np.full(len(ages), np.nan) if female is None else female
    return fit_ensemble(outputs, ages, female, flip_members=sorted(set(FLIP_MEMBERS) & set(outputs)),
                        affine_members=AFFINE_MEMBERS)


def evaluate(outputs: dict, ages: dict, keep: np.ndarray, people: np.ndarray) -> dict[str, np.ndarray]:
    """UTKFace held-out from one fit on train + all FG-NET; FG-NET person by person from fits without that person."""
    train, train_ages = subset(outputs["train"], keep), ages["train"][keep]
    cal = fit(concat(train, outputs["fgnet"]), np.concatenate([train_ages, ages["fgnet"]]))
    pred = {"heldout": combine(outputs["heldout"], cal).age, "fgnet": np.zeros(len(people))}
    for person in np.unique(people):
        out = people == person
        cal = fit(concat(train, subset(outputs["fgnet"], ~out)), np.concatenate([train_ages, ages["fgnet"][~out]]))
        pred["fgnet"][out] = combine(subset(outputs["fgnet"], out), cal).age
    return pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=6, help="FG-NET person groups (each scored by heads without it)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="save the heads, their card and default.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.time()
    sets = {"train": cached_set("utkface", "age", "train"), "heldout": cached_set("utkface", "age", "heldout"),
            "fgnet": cached_set("fgnet", "real_age", "all")}
    x = {name: arcface_rows("fgnet" if name == "fgnet" else "utkface", *sets[name]) for name in sets}
    degraded = map_features("train", *sets["train"], arcface_model(), True)
    ages = {name: np.array([s.age for s in samples], dtype=np.float64) for name, (samples, _) in sets.items()}
    people = person_ids(sets["fgnet"][0])
    fold = person_folds(people, args.folds)
    spec = HeadSpec("arcface_mbf", FINAL_MAP_MODULE, relu=False, pooling="gap+grid", in_features=x["train"].shape[1],
                    dropout=0.2, members=args.members, label_sigma=2.0)
    trainer = Trainer(x, ages, degraded, spec, args.epochs)
    final, final_features = trainer.train(np.ones(len(people), bool))
    n_train = len(x["train"])
    probs = {"train": out_of_bag_probs(final.ensemble, final_features, final.bags)[:n_train],
             "heldout": predict_probs(final.ensemble, x["heldout"]), "fgnet": np.zeros((len(people), len(AGE_VALUES)))}
    for f in tqdm(sorted(set(fold)), desc="FG-NET person folds", unit="fold"):
        result, _ = trainer.train(fold != f)
        probs["fgnet"][fold == f] = predict_probs(result.ensemble, x["fgnet"][fold == f])
    has_oob = ~np.isnan(probs["train"]).any(axis=1)  # a face in every bootstrap bag has no out-of-bag output
    keep = has_oob & np.array([bool(r["detected"]) for r in sets["train"][1]])
    probs["train"] = np.nan_to_num(probs["train"])
    out_of_sample = ([s for s, ok in zip(sets["train"][0], has_oob, strict=True) if ok] + sets["fgnet"][0],
                     np.vstack([probs["train"][has_oob], probs["fgnet"]]))
    detected = {n: np.array([bool(r["detected"]) for r in sets[n][1]]) for n in ("heldout", "fgnet")}
    report: dict = {"folds": args.folds, "epochs": args.epochs, "members": args.members, "rows": {}}

    def row(label: str, pred: dict[str, np.ndarray]) -> str:
        h, f = detected["heldout"], detected["fgnet"]
        report["rows"][label] = {"utk_heldout": mae(pred["heldout"][h], ages["heldout"][h]),
                                 "fgnet": mae(pred["fgnet"][f], ages["fgnet"][f])}
        return (f"| {label} | {report['rows'][label]['utk_heldout']:.3f} | {report['rows'][label]['fgnet']:.3f} | "
                f"{bands(pred['heldout'][h], ages['heldout'][h])} | {bands(pred['fgnet'][f], ages['fgnet'][f])} |")

    lines = ["| ensemble (detected faces) | UTKFace held-out | FG-NET, person held out | UTK by band | FG-NET by band "
             "|",
             "|---|---|---|---|---|",
             row("the ArcFace member alone", {n: probs[n] @ AGE_VALUES for n in ("heldout", "fgnet")})]
    outputs: dict = {}
    for label, with_head in (("published members (shipped protocol)", False), ("published + ArcFace member", True)):
        outputs = {}
        for name, (_, rows) in sets.items():
            outputs[name] = member_outputs(rows, PUBLISHED, FLIP_MEMBERS)
            if with_head:
                outputs[name][NAME] = MemberOutput(NAME, "1", AGE_VALUES, probs[name], None)
        lines.append(row(label, evaluate(outputs, ages, keep, people)))
    f = detected["fgnet"]
    members = {n: o.expected_age for n, o in outputs["fgnet"].items() if o.age_probs is not None}
    report["fgnet_members_alone"] = {n: mae(v[f], ages["fgnet"][f]) for n, v in sorted(members.items())}
    print("\n" + "\n".join(lines))
    print("\nFG-NET members alone (raw expectation): "
          + ", ".join(f"{n} {v:.3f}" for n, v in report["fgnet_members_alone"].items()))
    print(f"\nFG-NET person folds {args.folds}; epochs {args.epochs}; heads {args.members}; "
          f"{time.time() - started:.0f} s")
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    if args.write:
        write(final, sets, outputs, ages, keep, report, out_of_sample)


def write(final: object, sets: dict, outputs: dict, ages: dict, keep: np.ndarray, report: dict,
          out_of_sample: tuple[list, np.ndarray]) -> None:
    """The heads (with their training images' digests and out-of-sample outputs), their card, and default.json."""
    ensemble = final.ensemble  # type: ignore[attr-defined]
    samples = [*sets["train"][0], *sets["fgnet"][0]]
    path = committed_head_path(HEAD_FILE)
    oos_samples, oos_probs = out_of_sample
    save_heads(path, ensemble, {
        "train_images": [image_digest(s.path) for s in samples],
        "out_of_sample": {"images": [image_digest(s.path) for s in oos_samples],
                          "probs": torch.from_numpy(oos_probs).half(),
                          "protocol": "FG-NET: heads without the person's group (person-disjoint folds); UTKFace "
                                      "train: out-of-bag heads"},
        "best_epoch": final.best_epoch})  # type: ignore[attr-defined]
    card = {
        "name": NAME, "task": "age", "backbone": "arcface_mbf",
        "architecture": f"{ensemble.spec.members} × DEX head (linear, 101-way softmax) on the mean of face and "
                        "mirror of InsightFace MobileFaceNet's last map (global mean + 2×2 grid, 2,560 features)",
        "training_data": f"../shared/data/utkface train portion ({len(sets['train'][0])} faces) and its degraded "
                         f"copies (age_arcface_head.degrade), plus all {len(sets['fgnet'][0])} FG-NET photos (real "
                         "ages); bootstrap bags, Gaussian label distributions σ = 2 y",
        "licence": "Non-commercial research only: UTKFace and FG-NET are research-only data sets; backbone weights "
                   "InsightFace buffalo_s (non-commercial research only)",
        "commercial_use": False,
        "measured": report,
        "measured_by": "PYTHONPATH=. .venv/bin/python benchmarks/age_arcface_member.py --write (FG-NET: each "
                       "person scored by heads and a calibration that never saw them)",
        "evaluation_note": "howhot eval age scores the images these heads trained on from their out-of-sample "
                           "record (FG-NET: person-disjoint folds; UTKFace train: out-of-bag) and counts any left "
                           "in-sample (JSON: out_of_sample / in_sample)",
    }
    path.with_name(f"{NAME}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    old = load_calibration("default")
    train = subset(outputs["train"], keep)
    cal = fit(concat(train, outputs["fgnet"]), np.concatenate([ages["train"][keep], ages["fgnet"]]))
    cal.gender_weights = old.gender_weights  # type: ignore[attr-defined]
    cal.flip_members = sorted(set(cal.flip_members) | (set(old.flip_members) & set(old.gender_weights)))  # type: ignore[attr-defined]
    cal.spread_sd, cal.spread_per_year = old.spread_sd, old.spread_per_year  # type: ignore[attr-defined]
    cal.profile = "default"  # type: ignore[attr-defined]
    cal.fitted_on = (f"age: UTKFace train portion ({int(keep.sum())} detected face-pipeline chips; {NAME} "  # type: ignore[attr-defined]
                     f"out-of-bag) plus all {len(ages['fgnet'])} FG-NET photos ({NAME} out-of-fold, person-disjoint "
                     "groups), by benchmarks/age_arcface_member.py; gender weights and spread kept from the previous "
                     "default.json (benchmarks/gender_embedding_train.py, benchmarks/age_fit_spread.py)")
    cal.metrics = {"person_disjoint": report["rows"]}  # type: ignore[attr-defined]
    cal.save(CALIBRATION_DIR / "default.json")  # type: ignore[attr-defined]
    print(f"wrote {path}, its card and {CALIBRATION_DIR / 'default.json'}")


if __name__ == "__main__":
    main()
