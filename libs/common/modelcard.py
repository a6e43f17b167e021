"""Model cards: what a converted model is, where it came from, what it may be used for and how well it does.

A card is saved as ``<name>.card.json`` next to the converted weights ``<name>.pt`` in the model cache; the registry
of each service builds cards from its pretrained-config table (timm style), so the card is also the preprocessing spec.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libs.common.atomicfile import write_atomically


@dataclass(frozen=True)
class ModelCard:
    """Provenance, licence, preprocessing and measured accuracy of one model."""

    name: str
    task: str  # e.g. "face-detection", "age", "gender", "attractiveness"
    architecture: str
    source: str  # package==version and the member path, or a URL / user-supplied file
    licence: str
    commercial_use: bool  # False for research-only weights (IMDB-WIKI, ...): excluded by the commercial-safe profile
    preprocessing: dict[str, Any] = field(default_factory=dict)
    expected_accuracy: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    version: str = "1"
    sha256: str = ""  # of the converted weights file

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        """Write to a temporary file beside ``path``, fsync, then rename it into place: a crash or a failed write
        leaves the previous card (or none), never a truncated one that the registries could not read."""
        write_atomically(Path(path), [(self.to_json() + "\n").encode()])

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls(**json.loads(path.read_text()))

    @classmethod
    def load_if_readable(cls, path: Path) -> ModelCard | None:
        """The card at ``path``, or None if it is not valid JSON with a card's fields (truncated by a crash in an
        older version, edited by hand): callers checking whether a model is current then convert it again."""
        try:
            return cls.load(path)
        except (ValueError, TypeError):  # JSONDecodeError is a ValueError; missing/unknown fields a TypeError
            return None
