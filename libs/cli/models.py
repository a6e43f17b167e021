"""``howhot models``: every service's registry fetches and converts its own weights into the shared model cache."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from libs.common.modelcache import sha256_file
from libs.common.modelcard import ModelCard
from libs.common.settings import Settings

# Each entry: a module exposing ``fetch(models_dir, progress=True) -> list[ModelCard]``.
REGISTRIES = (
    "services.face.models.convert_tf_graph", "services.scoring.models.registry",
    "services.scoring.models.embedding_registry",  # dlib face embedding (not an ensemble member)
    "services.scoring.models.arcface_registry",  # MobileFaceNet: attractiveness features, age member backbone
)
CARD_SUFFIX = ".card.json"
WEIGHTS_SUFFIX = ".pt"  # every registry saves ``<name>.pt`` next to ``<name>.card.json``
OK = "ok"


class UnreadableCard(ValueError):
    """A card file that is not a ModelCard: truncated by an interrupted conversion, or edited by hand."""


def load_card(path: Path) -> ModelCard:
    """The card at ``path``; UnreadableCard (naming the file) if it is not valid JSON with a card's fields."""
    try:
        return ModelCard.load(path)
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError; missing/unknown fields a TypeError
        raise UnreadableCard(f"{path.name}: {exc}") from exc


def weights_status(card_path: Path, card: ModelCard) -> str:
    """``ok`` if the weights beside the card exist and match its sha256, else what is wrong with them: a card alone
    says nothing about whether its weights survived (a truncated copy, a half-synced volume)."""
    weights = card_path.with_name(card_path.name.removesuffix(CARD_SUFFIX) + WEIGHTS_SUFFIX)
    if not weights.is_file():
        return "weights missing"
    if card.sha256 and sha256_file(weights) != card.sha256:
        return "weights corrupt (sha256 mismatch)"
    return OK


def remove_unreadable_cards(models_dir: Path) -> list[str]:
    """Delete card files that cannot be read, so each registry converts their model again instead of crashing on
    them (the registries skip a model only when its card and weights match); returns their file names."""
    removed = []
    for path in sorted(models_dir.glob(f"*{CARD_SUFFIX}")):
        try:
            load_card(path)
        except UnreadableCard:
            path.unlink()
            removed.append(path.name)
    return removed


def fetch_all(settings: Settings) -> int:
    models_dir = settings.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in remove_unreadable_cards(models_dir):
        print(f"unreadable card {name} removed: its model is converted again")
    started = time.monotonic()
    cards: list[ModelCard] = []
    for name in REGISTRIES:
        module = importlib.import_module(name)
        cards.extend(module.fetch(models_dir, progress=True))
    print(f"\n{len(cards)} model(s) ready in {models_dir.resolve()} ({time.monotonic() - started:.0f} s):")
    for card in cards:
        usage = "commercial use OK" if card.commercial_use else "RESEARCH ONLY"
        print(f"  {card.name:<28} {card.task:<16} {card.licence[:40]:<40} {usage}")
    return 0


def list_cards(settings: Settings) -> int:
    """Print every converted model with the state of its weights; exit 1 if any model is not usable as it is."""
    cards = sorted(settings.models_dir.glob(f"*{CARD_SUFFIX}"))
    if not cards:
        print(f"no converted models in {settings.models_dir}; run `howhot models fetch`")
        return 1
    broken = 0
    for path in cards:
        try:
            card = load_card(path)
        except UnreadableCard as exc:
            broken += 1
            print(f"{path.name.removesuffix(CARD_SUFFIX):<28} {'?':<16} unreadable card ({exc})")
            continue
        status = weights_status(path, card)
        broken += status != OK
        print(f"{card.name:<28} {card.task:<16} {status:<10} {card.source[:50]:<50} {card.licence}")
    if broken:
        print(f"{broken} model(s) not usable as they are; run `howhot models fetch` to convert them again")
        return 1
    return 0
