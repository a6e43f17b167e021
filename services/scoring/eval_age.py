"""``howhot eval age``: age (and gender) accuracy of the ensemble and each member on a labelled folder.

The folder has ``images/`` and ``labels.csv`` (``file`` + the target column; optional ``gender`` 0/1,
``apparent_age_std``, ``race``). By default every image goes through the production pipeline — RetinaFace, the
largest/most central face, alignment onto the chip contract, every member, the calibrated ensemble. A photo without
a detected face counts as a *failure* and is still scored through the whole-image fallback
(``evaluation.faces``): ``mae`` covers detected faces, ``mae_with_fallback`` every image. ``--aligned`` declares the
images already-aligned crops: misses are expected and use the same fallback, so ``mae`` covers every image and the
misses are reported as ``fallbacks``. Member outputs are cached per image (``.howhot/cache/age``), so a re-run or a
calibration refit does not run the networks again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.scoring.evaluation.data import TARGET_COLUMNS, AgeSample, DatasetError, read_age_samples, subsample
from services.scoring.evaluation.metrics import age_band, gender_accuracy, race_label, summarize

ENSEMBLE = "ensemble"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``howhot eval age``."""
    parser.add_argument("--dataset", type=Path, required=True, help="folder with images/ and labels.csv")
    parser.add_argument("--target", choices=sorted(TARGET_COLUMNS), default="age", help="label column to predict")
    parser.add_argument("--aligned", action="store_true", help="images are aligned face crops (misses → fallback)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.add_argument("--limit", type=int, help="evaluate a repeatable hash-sample of at most N images")
    parser.add_argument("--portion", choices=["all", "train", "heldout"], default="all",
                        help="hash split portion (70/30, see evaluation.data); 'heldout' for sets used in fitting")
    parser.add_argument("--report", type=Path, help="write an HTML report (worst faces per group, plots) here")
    parser.add_argument("--profile", choices=["default", "commercial-safe"], default="default")
    parser.add_argument("--calibration", type=Path, help="an EnsembleCalibration JSON instead of the profile's")
    parser.add_argument("--cache-dir", type=Path, default=None, help="member-output cache (.howhot/cache/age)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")


@dataclass
class AgeEvaluation:
    """The summary (JSON-ready) and one record per image (for the report)."""

    summary: dict[str, Any]
    records: list[dict[str, Any]]


def _records(samples: list[AgeSample], rows: list[dict], preds: Any) -> list[dict[str, Any]]:
    out = []
    for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
        out.append({
            "file": sample.file, "path": str(sample.path), "true_age": sample.age, "true_female": sample.female,
            "race": race_label(sample.race) if sample.race else None, "band": age_band(sample.age),
            "age": float(preds.age[i]), "age_low": float(preds.age_low[i]), "age_high": float(preds.age_high[i]),
            "p_female": float(preds.p_female[i]),
            "members": {n: float(a[i]) for n, a in preds.member_age.items()},
            "detected": bool(row["detected"]), "landmarks": np.asarray(row["landmarks"]).tolist(),
        })
    return out


def evaluate_age(
    dataset: Path,
    target: str = "age",
    aligned: bool = False,
    limit: int | None = None,
    portion: str = "all",
    profile: str = "default",
    calibration_path: Path | None = None,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> AgeEvaluation:
    """Run (or read from the cache) the pipeline on a folder and compute every figure."""
    from services.scoring.ensemble import EnsembleCalibration, load_calibration
    from services.scoring.evaluation.extract import (
        DEFAULT_CACHE_DIR,
        PIPELINE_KEY,
        cache_path,
        extract,
        extract_embedder,
    )
    from services.scoring.evaluation.predict import embedder_kinds, predict, registered_heads

    mode = "aligned" if aligned else "detect"
    samples = subsample(read_age_samples(dataset, target, portion), limit)
    if not samples:
        raise DatasetError(f"no labelled images in {dataset} (target {target}, portion {portion})")
    cache = cache_dir or DEFAULT_CACHE_DIR
    by_file = extract(samples, dataset, mode, cache_dir=cache, models_dir=models_dir, progress=progress)
    calibration = EnsembleCalibration.load(calibration_path) if calibration_path else load_calibration(profile)
    for kind in embedder_kinds(calibration.members):  # members on an embedder: their inputs are cached apart
        by_file = extract_embedder(samples, by_file, dataset, kind, cache_dir=cache, models_dir=models_dir,
                                   progress=progress)
    rows, provenance = with_image_digests([by_file[s.file] for s in samples], calibration.members, samples)
    preds = predict(rows, calibration, registered_heads(calibration.members))
    detected = np.array([bool(r["detected"]) for r in rows])
    true_age = np.array([s.age for s in samples])
    female = np.array([np.nan if s.female is None else s.female for s in samples])
    std = np.array([np.nan if s.age_std is None else s.age_std for s in samples])
    races = [s.race for s in samples]
    scored = np.ones(len(samples), bool) if aligned else detected
    keep = np.flatnonzero(scored)

    def figures(rows_idx: np.ndarray) -> dict[str, Any]:
        return summarize(true_age[rows_idx], preds.age[rows_idx], {n: a[rows_idx] for n, a in preds.member_age.items()},
                         preds.p_female[rows_idx], female[rows_idx], std[rows_idx], [races[i] for i in rows_idx],
                         (preds.age_low[rows_idx], preds.age_high[rows_idx]))

    summary: dict[str, Any] = {
        "dataset": str(dataset), "target": target, "mode": mode, "portion": portion, "limit": limit,
        "profile": calibration.profile, "calibration_fitted_on": calibration.fitted_on,
        "images": len(samples), "failures": 0 if aligned else int((~detected).sum()),
        "fallbacks": int((~detected).sum()), **figures(keep),
    }
    summary["gender_member_accuracy"] = {  # on the faces with a gender label, as the ensemble's gender_accuracy
        n: gender_accuracy(p[keep], female[keep]) for n, p in preds.member_p_female.items()
        if not np.isnan(female[keep]).all()
    }
    if not aligned:
        summary["mae_with_fallback"] = float(np.mean(np.abs(preds.age - true_age)))
    member_maes = [v for v in summary["member_mae"].values() if np.isfinite(v)]
    summary["beats_every_member"] = bool(member_maes and summary["mae"] < min(member_maes))
    summary["ms_per_face"] = {
        "detect_align": float(np.mean([r["detect_ms"] for r in rows])),
        "members": float(np.mean([r["member_ms"] for r in rows])),
        "note": "measured when the cache rows were computed (shared 2-core CPU, batches of 16); "
                "members = the three backbones incl. CC0 mirror passes, not the DEX heads",
    }
    summary["cache"] = str(cache_path(dataset, PIPELINE_KEY, list(_backbones()), cache))
    if provenance:
        scored = set(keep.tolist())
        for key in ("out_of_sample", "in_sample"):
            counts = {n: sum(1 for i in rows_idx if i in scored) for n, rows_idx in provenance[key].items()}
            if any(counts.values()):
                summary[key] = {n: c for n, c in counts.items() if c}
    return AgeEvaluation(summary, _records(samples, rows, preds))


def with_image_digests(rows: list[dict], members: Sequence[str], samples: list[AgeSample]) -> tuple[list[dict], dict]:
    """``rows`` with each image's digest when a member trained on some of these images (``training_provenance``), so
    ``predict`` scores those from the member's out-of-sample record; and the provenance (empty when none did)."""
    from services.scoring.evaluation.predict import IMAGE_DIGEST_KEY

    provenance = training_provenance(list(members), samples)
    if provenance:
        rows = [{**row, IMAGE_DIGEST_KEY: digest} for row, digest in zip(rows, provenance["digests"], strict=True)]
    return rows, provenance


def training_provenance(members: list[str], samples: list[AgeSample]) -> dict[str, Any]:
    """For members whose head file lists its training images (the ArcFace age member trains on FG-NET and
    UTKFace's train portion): the samples' image digests, and per member which samples it trained on and has an
    out-of-sample record for (``out_of_sample``: scored from that record) or not (``in_sample``: their figures flatter
    it). Empty when no member lists its images."""
    from services.scoring.models.arcface_age import image_digest, out_of_sample_probs
    from services.scoring.models.registry import PRETRAINED_CONFIGS
    from services.scoring.training.heads import load_heads
    from services.scoring.training.member import committed_head_path

    listed = [n for n in members if n in PRETRAINED_CONFIGS and PRETRAINED_CONFIGS[n].converter == "arcface_head"]
    if not listed:
        return {}
    digests = [image_digest(s.path) for s in samples]
    out: dict[str, Any] = {"digests": digests, "out_of_sample": {}, "in_sample": {}}
    for name in listed:
        extra = load_heads(committed_head_path(PRETRAINED_CONFIGS[name].member))[1]
        trained, recorded = set(extra.get("train_images", [])), out_of_sample_probs(extra)
        out["out_of_sample"][name] = [i for i, d in enumerate(digests) if d in trained and d in recorded]
        out["in_sample"][name] = [i for i, d in enumerate(digests) if d in trained and d not in recorded]
    return out


def _backbones() -> tuple[str, ...]:
    from services.scoring.evaluation.extract import BACKBONE_MEMBERS

    return BACKBONE_MEMBERS


def format_table(summary: dict[str, Any]) -> str:
    """A readable plain-text summary: overall figures, MAE per band for the ensemble and every member."""
    members = list(summary["member_mae"])
    lines = [
        f"{summary['dataset']}  target={summary['target']}  mode={summary['mode']}  portion={summary['portion']}  "
        f"profile={summary['profile']}",
        f"images {summary['images']}  scored {summary['n']}  failures (no face) {summary['failures']}  "
        f"fallbacks {summary['fallbacks']}",
    ]
    header = f"{'group':<14}{'n':>6}{'ensemble':>10}" + "".join(f"{m[:22]:>24}" for m in members)
    lines += ["", header, "-" * len(header)]
    lines.append(f"{'all':<14}{summary['n']:>6}{summary['mae']:>10.2f}"
                 + "".join(f"{summary['member_mae'][m]:>24.2f}" for m in members))
    for band, entry in summary["by_band"].items():
        per = entry.get("member_mae", {})
        lines.append(f"{band:<14}{entry['n']:>6}{entry['mae']:>10.2f}"
                     + "".join(f"{per.get(m, float('nan')):>24.2f}" for m in members))
    for key in ("by_race", "by_gender"):
        for group, entry in summary.get(key, {}).items():
            lines.append(f"{group:<14}{entry['n']:>6}{entry['mae']:>10.2f}")
    extras = []
    if "mae_with_fallback" in summary:
        extras.append(f"MAE incl. fallbacks {summary['mae_with_fallback']:.2f}")
    if "eps_error" in summary:
        extras.append(f"eps-error {summary['eps_error']:.3f}")
    if "range_coverage" in summary:
        extras.append(f"80 % age range holds {summary['range_coverage']:.1%} of true ages (by band: " + ", ".join(
            f"{band} {entry['range_coverage']:.0%}" for band, entry in summary["by_band"].items()) + ")")
    if "gender_accuracy" in summary:
        extras.append(f"gender accuracy {summary['gender_accuracy']:.3f} (members: "
                      + ", ".join(f"{n} {v:.3f}" for n, v in summary["gender_member_accuracy"].items()) + ")")
        extras.append("gender accuracy by age band: " + ", ".join(
            f"{band} {entry['gender_accuracy']:.3f}" for band, entry in summary["by_band"].items()
            if "gender_accuracy" in entry))
    ms = summary["ms_per_face"]
    extras.append(f"ms/face: detect+align {ms['detect_align']:.0f}, members {ms['members']:.0f}")
    extras.append("ensemble beats every member: " + ("yes" if summary["beats_every_member"] else "NO"))
    for name, n in summary.get("out_of_sample", {}).items():
        extras.append(f"{name} trained on {n} of these images: scored from its out-of-sample record (heads that "
                      "never saw them, benchmarks/age_arcface_member.py)")
    for name, n in summary.get("in_sample", {}).items():
        extras.append(f"IN-SAMPLE: {name} trained on {n} of these images with no out-of-sample record; its figures "
                      "and the ensemble's flatter it")
    return "\n".join([*lines, "", *extras])


def run_eval_age(args: argparse.Namespace, settings: Any) -> int:
    """Entry point for ``howhot eval age`` (0 on success)."""
    import torch

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))  # shared 2-core machines
    try:
        result = evaluate_age(
            args.dataset, args.target, args.aligned, args.limit, args.portion, args.profile, args.calibration,
            models_dir=getattr(settings, "models_dir", None), cache_dir=args.cache_dir, progress=not args.no_progress,
        )
    except DatasetError as exc:  # the user's folder, not the program: say what to fix, no traceback
        print(f"howhot eval age: {exc}", file=sys.stderr)
        return 2
    if args.report:
        from services.scoring.report import write_report

        page = write_report(args.report, result.summary, result.records)
        print(f"report: {page}", file=sys.stderr)
    print(json.dumps(result.summary, indent=1) if args.json else format_table(result.summary))
    return 0
