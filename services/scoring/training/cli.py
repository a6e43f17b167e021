"""``howhot train dex``: train K DEX age members on a labelled folder or IMDB-WIKI.

``--mode heads`` (default; what a CPU can do): 101-way heads on the backbone's frozen, cached features
(``evaluation.extract``), trained on the data set's hash-split train portion and measured on its held-out portion
against the backbone's own age output. ``--mode full``: end-to-end fine-tuning from augmented images (a GPU job
except for the CC0 net; see benchmarks/results/age_training.md for the command and the expected time), validated on
out-of-bag faces and checkpointed every epoch (``--resume``), crops streamed from disk beyond ``--cache-gb``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.scoring.training.backbones import BACKBONES, backbone
from services.scoring.training.loader import DEFAULT_CACHE_BYTES, DEFAULT_VAL_FRACTION

DEFAULT_OUT = Path(".howhot/training")
HEAD_NAMES = {"wrn16_8": "dex_head_wrn", "agegender_cc0": "dex_head_cc0"}  # registry member names of the heads
DEFAULT_MEMBERS = 5  # DEX used 20 networks; on cached features 5 bootstrap heads already average out most variance
DEFAULT_LABEL_SIGMA = 2.5  # UTKFace train-portion split (900/300): WRN head MAE 6.70 vs 6.92 one-hot; CC0 7.00 vs 7.41
HEAD_THREADS = 1  # heads are small matmuls: more threads only spin-wait on a shared CPU
MAX_VAL_FRACTION = 0.5  # beyond this a single member would train on less than it is validated on


def validation_share(text: str) -> float:
    """``--val-fraction``: a share in [0, 0.5] (0 = train a single member on everything, without validation)."""
    value = float(text)
    if not 0.0 <= value <= MAX_VAL_FRACTION:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_VAL_FRACTION}, got {text}")
    return value


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``howhot train dex``."""
    parser.add_argument("--data", type=Path, required=True,
                        help="a folder with images/ + labels.csv, or an IMDB-WIKI .mat file (images beside it)")
    parser.add_argument("--format", choices=["auto", "folder", "imdbwiki"], default="auto")
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="wrn16_8")
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="K bootstrap members (DEX ensemble)")
    parser.add_argument("--epochs", type=int, default=None, help="heads: 100; full: 10")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where trained weights and cards go")
    parser.add_argument("--mode", choices=["heads", "full"], default="heads")
    parser.add_argument("--target", default="age", help="label column family (age, real_age, apparent_age)")
    parser.add_argument("--limit", type=int, help="train on a repeatable hash-sample of at most N train images")
    parser.add_argument("--heldout-limit", type=int, help="measure on at most N held-out images")
    parser.add_argument("--pooling", choices=["grid", "gap"], default="gap", help="heads: feature pooling")
    parser.add_argument("--no-probs", action="store_true",
                        help="heads: do not feed the backbone's own log P(age) to the head")
    parser.add_argument("--label-sigma", type=float, default=DEFAULT_LABEL_SIGMA,
                        help="heads: Gaussian label distribution σ in years (0 = one-hot, as DEX)")
    parser.add_argument("--hidden", type=int, default=0, help="heads: hidden layer width (0 = linear head)")
    parser.add_argument("--dropout", type=float, default=0.2, help="heads: feature dropout")
    parser.add_argument("--name", help="member name for the saved head (default dex_head_<backbone>)")
    parser.add_argument("--device", default="auto", help="full: cuda / cpu / auto")
    parser.add_argument("--lr", type=float, help="full: peak learning rate of the one-cycle schedule (default 1e-4)")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="full: weight of the KL towards the frozen published network (0 = off)")
    parser.add_argument("--workers", type=int,
                        help="full: crop loader processes (default: 0 on a CPU, up to 8 on a GPU); also the photo "
                             "decoders of a folder's landmark pass (default: all cores but one, at most 8)")
    parser.add_argument("--cache-gb", type=float, default=DEFAULT_CACHE_BYTES / 2**30,
                        help="full: keep decoded crops in memory up to this size, else stream them from disk")
    parser.add_argument("--patience", type=int, default=0,
                        help="full: stop a member after N epochs without a better validation MAE (0 = never)")
    parser.add_argument("--val-fraction", type=validation_share, default=DEFAULT_VAL_FRACTION,
                        help="full, --members 1: share of faces held out for validation (K > 1 use out-of-bag faces)")
    parser.add_argument("--resume", action="store_true",
                        help="full: continue from the per-epoch checkpoints in --out; skip members already trained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")


def _samples(args: argparse.Namespace, portion: str, limit: int | None) -> tuple[list, Path]:
    """AgeSamples of one hash-split portion, from a folder or an IMDB-WIKI .mat (images relative to its folder)."""
    from services.scoring.evaluation.data import AgeSample, read_age_samples, split_portion, subsample

    fmt = args.format
    if fmt == "auto":
        fmt = "imdbwiki" if args.data.suffix == ".mat" else "folder"
    if fmt == "folder":
        return subsample(read_age_samples(args.data, args.target, portion), limit), args.data
    from services.scoring.training.imdbwiki import read_imdbwiki

    root = args.data.parent
    faces = [f for f in read_imdbwiki(args.data) if portion == "all" or split_portion(f.path) == portion]
    return subsample([AgeSample(f.path, root / f.path, float(f.age), f.female) for f in faces], limit), root


def train_heads_command(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    """Heads on cached features: train, measure on the held-out portion, save weights + card; returns the card."""
    from services.scoring.evaluation.extract import extract
    from services.scoring.evaluation.metrics import mae
    from services.scoring.evaluation.predict import head_features, member_outputs
    from services.scoring.training.fit_heads import DEFAULT_EPOCHS, predict_probs, train_heads
    from services.scoring.training.heads import HeadSpec, expected_age, save_heads

    b = backbone(args.backbone)
    if b.member is None:
        raise SystemExit(f"backbone {args.backbone} has no pretrained weights: use --mode full")
    models_dir = getattr(settings, "models_dir", None)
    train, root = _samples(args, "train", args.limit)
    heldout, _ = _samples(args, "heldout", args.heldout_limit)
    progress = not args.no_progress
    train_by_file = extract(train, root, models_dir=models_dir, progress=progress)
    held_by_file = extract(heldout, root, models_dir=models_dir, progress=progress)
    train_rows = [train_by_file[s.file] for s in train]
    held_rows = [held_by_file[s.file] for s in heldout]
    probs = not args.no_probs
    x = head_features(train_rows, b.member, args.pooling, with_probs=probs)
    x_flip = head_features(train_rows, b.member, args.pooling, mirrored=True, with_probs=probs)
    spec = HeadSpec(backbone=b.member, layer=b.layer, relu=b.relu, pooling=args.pooling, in_features=x.shape[1],
                    hidden=args.hidden, dropout=args.dropout, members=args.members, with_probs=probs,
                    label_sigma=args.label_sigma)
    ages = np.array([s.age for s in train])
    started = time.perf_counter()
    result = train_heads(x, ages, spec, x_flip, epochs=args.epochs or DEFAULT_EPOCHS, seed=args.seed,
                         log=lambda m: print(m, file=sys.stderr))
    seconds = time.perf_counter() - started
    held_ages = np.array([s.age for s in heldout])
    held_x = head_features(held_rows, b.member, args.pooling, with_probs=probs)
    head_mae = mae(expected_age(predict_probs(result.ensemble, held_x)), held_ages)
    held_flip = head_features(held_rows, b.member, args.pooling, mirrored=True, with_probs=probs)
    flip_mae = None
    if held_flip is not None:
        both = (predict_probs(result.ensemble, held_x) + predict_probs(result.ensemble, held_flip)) / 2
        flip_mae = mae(expected_age(both), held_ages)
    own = member_outputs(held_rows, [b.member], [])[b.member]
    name = args.name or HEAD_NAMES.get(args.backbone, f"dex_head_{args.backbone}")
    out = Path(args.out)
    save_heads(out / f"{name}.pt", result.ensemble, {
        "name": name, "train_files": [s.file for s in train], "bags": [b.tolist() for b in result.bags]})
    card = {
        "name": name, "task": "age", "architecture": f"{spec.members} × DEX head ({spec.pooling} pooling of "
        f"{b.member}:{b.layer}, {spec.in_features} features, hidden {spec.hidden}) averaged",
        "backbone": b.member, "training_data": f"{args.data} train portion (hash split, {len(train)} faces)",
        "licence": "Non-commercial research only: trained on UTKFace (non-commercial research licence); backbone: "
        + b.licence, "commercial_use": False,
        "measured": {"heldout_faces": len(heldout), "head_mae": head_mae, "head_mae_flip_tta": flip_mae,
                     "backbone_own_mae": mae(own.expected_age, held_ages),
                     "oob_mae": [float(min(c)) for c in result.oob_mae], "best_epochs": result.best_epoch,
                     "train_seconds": round(seconds, 1)},
        "arguments": {k: str(v) for k, v in sorted(vars(args).items()) if not callable(v)},
    }
    (out / f"{name}.card.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def run_train(args: argparse.Namespace, settings: Any) -> int:
    """Entry point for ``howhot train dex`` (0 on success)."""
    from services.scoring.evaluation.data import DatasetError

    try:
        return _run_train(args, settings)
    except DatasetError as exc:  # the user's folder, not the program: say what to fix, no traceback
        print(f"howhot train dex: {exc}", file=sys.stderr)
        return 2


def _run_train(args: argparse.Namespace, settings: Any) -> int:
    import torch

    if args.mode == "heads":
        # heads are small matmuls: one thread avoids OpenMP spin-waiting on a shared, contended CPU
        torch.set_num_threads(HEAD_THREADS)
        card = train_heads_command(args, settings)
        print(json.dumps(card["measured"], indent=1))
        return 0
    from services.scoring.training.full import FULL_LEARNING_RATE, train_full
    from services.scoring.training.loader import ImageItem

    models_dir = getattr(settings, "models_dir", None)
    train, root = _samples(args, "train", args.limit)
    if args.format == "imdbwiki" or args.data.suffix == ".mat":
        from services.scoring.training.imdbwiki import read_imdbwiki

        boxes = {f.path: f.box for f in read_imdbwiki(args.data)}
        items = [ImageItem(s.path, s.age, box=boxes[s.file]) for s in train]
    else:  # the face pipeline's landmarks (the detector alone; the evaluation cache's where it has them)
        from services.scoring.training.landmarks import decode_workers, folder_landmarks

        found = folder_landmarks(train, root, workers=decode_workers(args.workers), progress=not args.no_progress)
        print(f"face landmarks of {len(train)} train-portion photos: {found.detected} detected now, the rest from "
              "the evaluation and landmark caches", file=sys.stderr)
        if found.unreadable:
            first = next(iter(sorted(found.unreadable.items())))
            print(f"{len(found.unreadable)} unreadable images skipped (first: {first[0]}: {first[1]})",
                  file=sys.stderr)
        items = [ImageItem(s.path, s.age, landmarks=found.landmarks[s.file]) for s in train
                 if s.file in found.landmarks]
    started = time.perf_counter()
    saved = train_full(items, args.backbone, args.members, args.epochs or 10, args.out, models_dir=models_dir,
                       device=args.device, seed=args.seed, lr=args.lr or FULL_LEARNING_RATE, distill=args.distill,
                       log=lambda m: print(m, file=sys.stderr), workers=args.workers,
                       cache_bytes=int(args.cache_gb * 2**30), patience=args.patience,
                       val_fraction=args.val_fraction, resume=args.resume, progress=not args.no_progress)
    print(full_summary(saved, len(items), time.perf_counter() - started, args.out), file=sys.stderr)
    print("\n".join(map(str, saved)))
    return 0


def full_summary(saved: list[Path], faces: int, seconds: float, out: Path) -> str:
    """A person-readable account of a full run: each member's best epoch and its validation MAE."""
    import torch

    lines = [f"{len(saved)} members trained on {faces} faces in {seconds:.0f} s:"]
    for path in saved:
        extra = torch.load(path, map_location="cpu", weights_only=True)["extra"]
        val = extra.get("validation_mae")
        lines.append(f"  {path.name}: best epoch {extra.get('best_epoch')} of {len(extra.get('history', []))} run"
                     + (f", validation MAE {val:.2f} on {extra['validation_faces']} faces (before training "
                        f"{extra['validation_mae_before']:.2f})" if val is not None else ""))
    lines.append(f"measure them with: python benchmarks/age_finetune_cpu.py {out}")
    return "\n".join(lines)
