"""Where converted weights and their cards live in the model cache, and the three steps every registry repeats.

Each scoring registry (ensemble members, the face embeddings) converts published weights once into
``<models_dir>/<name>.pt`` with ``<name>.card.json`` beside it: written atomically, reused while the card's version,
source and sha256 still match, fetched on first use when missing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from libs.common.modelcache import sha256_file
from libs.common.modelcard import ModelCard


def weights_path(models_dir: Path, name: str) -> Path:
    return Path(models_dir) / f"{name}.pt"


def card_path(models_dir: Path, name: str) -> Path:
    return Path(models_dir) / f"{name}.card.json"


def save_converted(models_dir: Path, name: str, payload: object, card_for: Callable[[str], ModelCard]) -> ModelCard:
    """Write converted weights atomically (``.part`` then rename) and the card with their sha256 beside them."""
    target = weights_path(models_dir, name)
    tmp = target.with_suffix(".pt.part")
    torch.save(payload, tmp)
    tmp.replace(target)
    result = card_for(sha256_file(target))
    result.save(card_path(models_dir, name))
    return result


def current_card(models_dir: Path, expected: ModelCard) -> ModelCard | None:
    """The saved card of ``expected.name`` if its weights are there, unchanged, and of the expected version/source;
    None (convert again) otherwise, including when the card cannot be read."""
    weights, card_file = weights_path(models_dir, expected.name), card_path(models_dir, expected.name)
    if not (weights.exists() and card_file.exists()):
        return None
    saved = ModelCard.load_if_readable(card_file)  # unreadable (truncated by a crash): convert again
    if saved is None or (saved.version, saved.source) != (expected.version, expected.source):
        return None
    if saved.sha256 != sha256_file(weights):
        return None
    return saved


def ensure_weights(models_dir: Path | None, name: str, fetch_one: Callable[[Path], object]) -> Path:
    """The cached weights file of ``name`` (default model cache when None), converting it once if it is missing."""
    if models_dir is None:
        from libs.common.settings import Settings

        models_dir = Settings().models_dir
    path = weights_path(Path(models_dir), name)
    if not path.exists():
        fetch_one(Path(models_dir))
    return path
