"""What the scoring service calls: load the committed head, turn member features into (score, word, spread).

The service reads the members' features during the ensemble's own forward pass (``FaceScorer.score_batch`` with a
``tap``; same crops and flips as in training: flip TTA for the CC0 members and the face embedding, none for
WRN-16-8); ``chip_features`` runs members once more with the feature hooks for what that pass did not cover (and the
face embedding, which is no ensemble member, when the head reads it), and ``score_blocks`` maps the blocks through
the head. Attractiveness must never be shown for a probable minor: call
``services.scoring.beauty.minors.withhold_attractiveness`` on the ensemble's age distribution first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from libs.common.modelcard import ModelCard
from services.scoring.beauty.features import source_features, stack_blocks
from services.scoring.beauty.head import BeautyHead
from services.scoring.beauty.words import score_word

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_HEAD = "beauty_head_all"  # best validation accuracy; research-only (see its card)
CC0_HEAD = "beauty_head_cc0"  # CC0 features only (the backbone is commercial-safe; the labels are not)
FLIP_BY_MEMBER = {"wrn16_8_imdbwiki": False}  # as trained (WRN costs 2× with flips); other members use flip TTA


@dataclass(frozen=True)
class BeautyScore:
    """A 1–10 score, its word, and the calibrated spread (±spread holds the rated mean for ~68 % of faces)."""

    score: float
    word: str
    spread: float


def head_paths(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    return Path(weights_dir) / f"{name}.npz", Path(weights_dir) / f"{name}.card.json"


def load_beauty_head(name: str = DEFAULT_HEAD, weights_dir: Path = WEIGHTS_DIR) -> tuple[BeautyHead, ModelCard]:
    """The committed head and its model card (load once per process)."""
    weights, card = head_paths(name, weights_dir)
    return BeautyHead.load(weights), ModelCard.load(card)


def head_members(head: BeautyHead) -> list[str]:
    """Member names whose features the head reads (block names are ``<member>.<layer>``)."""
    return sorted({block.split(".", 1)[0] for block in head.blocks})


def score_blocks(head: BeautyHead, blocks: Mapping[str, np.ndarray]) -> list[BeautyScore]:
    """Scores for N faces given their feature blocks (dict of [N, D] arrays)."""
    scores, spreads = head.predict(stack_blocks(dict(blocks), head.blocks))
    return [BeautyScore(float(s), score_word(float(s)), float(sp)) for s, sp in zip(scores, spreads, strict=True)]


def score_vector(head: BeautyHead, features: np.ndarray) -> BeautyScore:
    """Score one already-stacked feature vector (``head.dim`` values in ``head.blocks`` order)."""
    score, spread = head.predict(np.asarray(features, dtype=np.float64).reshape(1, -1))
    return BeautyScore(float(score[0]), score_word(float(score[0])), float(spread[0]))


def chip_features(
    models: Mapping[str, object], chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """Feature blocks of every given source (``{name: nn.Module}``: members from ``create_model``, ``EMBEDDING``
    from ``embedding_registry.embedding_model``) for chips + landmarks."""
    blocks: dict[str, np.ndarray] = {}
    for name, model in models.items():
        blocks.update(source_features(name, model, chips, landmarks,  # type: ignore[arg-type]
                                      flip=FLIP_BY_MEMBER.get(name, True)))
    return blocks
