"""``howhot models``: every service's registry fetches and converts its own weights into the shared model cache."""

from __future__ import annotations

import importlib
import time

from libs.common.modelcard import ModelCard
from libs.common.settings import Settings

# Each entry: a module exposing ``fetch(models_dir, progress=True) -> list[ModelCard]``.
REGISTRIES = (
    "services.face.models.convert_tf_graph", "services.scoring.models.registry",
    "services.scoring.models.embedding_registry",  # dlib face embedding (not an ensemble member)
    "services.scoring.models.arcface_registry",  # InsightFace MobileFaceNet embedding (attractiveness features)
)


def fetch_all(settings: Settings) -> int:
    models_dir = settings.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
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
    cards = sorted(settings.models_dir.glob("*.card.json"))
    if not cards:
        print(f"no converted models in {settings.models_dir}; run `howhot models fetch`")
        return 1
    for path in cards:
        card = ModelCard.load(path)
        print(f"{card.name:<28} {card.task:<16} {card.source[:50]:<50} {card.licence}")
    return 0
