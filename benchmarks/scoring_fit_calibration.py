"""Fit the ensemble calibration of each profile on cached member outputs and measure it on the held-out portion.

    .venv/bin/python benchmarks/scoring_member_outputs.py --set utk-train --n 900
    .venv/bin/python benchmarks/scoring_member_outputs.py --set utk-eval --n 450
    .venv/bin/python benchmarks/scoring_fit_calibration.py

Writes services/scoring/calibration/<profile>.json (weights, affine maps, and the measured MAE of every member and of
the ensemble on the evaluation portion) and prints a Markdown table for benchmarks/results/scoring_calibration.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.scoring.ensemble import CALIBRATION_DIR, PROFILES, combine, fit_ensemble, profile_members  # noqa: E402
from services.scoring.evaluate import gender_accuracy, mae  # noqa: E402
from services.scoring.members import MemberOutput  # noqa: E402
from services.scoring.models import pretrained_config  # noqa: E402

CACHE = REPO / ".howhot" / "scoring_cache"
# The WRN is not flipped: a mirrored pass doubles the ensemble cost for 0.07 years of MAE (UTK train thirds)
FLIP_MEMBERS = ("agegender_cc0_age", "agegender_cc0_gender")
# Only the WRN gets an affine age map: the CC0 net's fitted map is almost the identity (0.7 + 0.98·age) and gained
# nothing on UTKFace-eval (6.087 → 6.062 without it) while it cost 0.2 years on FG-NET; the WRN's collapse towards
# 31–41 needs the stretch (scale ≈ 1.36).
AFFINE_MEMBERS = ("wrn16_8_imdbwiki",)


def outputs_from_cache(data: np.lib.npyio.NpzFile, names: list[str], flip: set[str]) -> dict[str, MemberOutput]:
    """MemberOutput per member from the cache, averaging the mirrored crop's probabilities for ``flip`` members."""
    outputs = {}
    for name in names:
        cfg = pretrained_config(name)
        parts = {}
        for kind in ("age_probs", "p_female"):
            key = f"{name}_{kind}"
            if key in data:
                value = data[key].astype(np.float64)
                if name in flip:
                    value = (value + data[f"{name}_flip_{kind}"].astype(np.float64)) / 2
                parts[kind] = value
        values = np.asarray(cfg.age_values, dtype=np.float64) if cfg.age_values else None
        outputs[name] = MemberOutput(name, cfg.version, values, parts.get("age_probs"), parts.get("p_female"))
    return outputs


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> None:
    train = np.load(CACHE / "utk-train.npz")
    eval_sets = [("utk-train", train), ("utk-eval", np.load(CACHE / "utk-eval.npz"))]
    if (CACHE / "fgnet.npz").exists():  # evaluation only: FG-NET never enters the fit
        eval_sets.append(("fgnet", np.load(CACHE / "fgnet.npz")))
    rows = ["| profile | set | n | " + " | ".join(["member / ensemble", "age MAE", "gender acc"]) + " |",
            "|---|---|---|---|---|---|"]
    for profile in PROFILES:
        names = profile_members(profile)
        flip = set(FLIP_MEMBERS) & set(names)
        cal = fit_ensemble(outputs_from_cache(train, names, flip), train["ages"], train["female"], profile=profile,
                           flip_members=sorted(flip), affine_members=AFFINE_MEMBERS,
                           fitted_on=f"UTKFace train portion ({len(train['ages'])} faces, crc32 split), chips from "
                           "aligned crops + fixed landmark estimate (services/scoring/chipsource.py)")
        metrics = {}
        for set_name, data in eval_sets:
            outputs = outputs_from_cache(data, names, flip)
            result = combine(outputs, cal)
            ages, female = data["ages"], data["female"]
            has_gender = not np.isnan(female).any()
            entry = {"n": len(ages), "ensemble_mae": mae(result.age, ages),
                     "ensemble_gender_acc": gender_accuracy(result.p_female, female) if has_gender else None,
                     "interval80_coverage": float(np.mean((ages >= result.age_low) & (ages <= result.age_high)))}
            for name, age in result.member_age.items():
                entry[f"{name}_mae"] = mae(age, ages)
            for name, pf in result.member_p_female.items():
                entry[f"{name}_gender_acc"] = gender_accuracy(pf, female) if has_gender else None
            metrics[set_name] = entry
            for name in names:
                rows.append(f"| {profile} | {set_name} | {len(ages)} | {name} | "
                            f"{entry.get(f'{name}_mae', float('nan')):.2f} | "
                            f"{_fmt(entry.get(f'{name}_gender_acc'))} |")
            rows.append(f"| {profile} | {set_name} | {len(ages)} | **ensemble** | **{entry['ensemble_mae']:.2f}** | "
                        f"{_fmt(entry['ensemble_gender_acc'])} |")
        cal.metrics = metrics
        CALIBRATION_DIR.mkdir(exist_ok=True)
        cal.save(CALIBRATION_DIR / f"{profile}.json")
        print(profile, cal.global_age_weights, cal.age_affine, cal.age_weights, cal.gender_weights, file=sys.stderr)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
