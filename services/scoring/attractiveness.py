"""Attractiveness for the scoring service: the committed beauty head on the members' features, with minors withheld.

Runs inside the same micro-batch as the age/gender ensemble (one call per batch), on the scorer's already-loaded
member networks; the minors rule (P(age < 18) above the threshold → no score, global or personal) is applied to the
ensemble's age distribution before anything is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from libs.common.modelcard import ModelCard
from services.scoring.beauty.minors import withhold_attractiveness
from services.scoring.beauty.scorer import (
    FLIP_BY_MEMBER,
    BeautyHead,
    chip_features,
    head_members,
    load_beauty_head,
    score_blocks,
)
from services.scoring.scorer import FaceScore, FaceScorer

ROUND = 2
DEFAULT_HEAD_BY_PROFILE = {"default": "beauty_head_all", "commercial-safe": "beauty_head_cc0"}


@dataclass
class Attractiveness:
    """The loaded head plus the minors threshold; ``enrich`` returns the extra result fields per face."""

    head: BeautyHead
    card: ModelCard
    minor_threshold: float

    @classmethod
    def load(cls, profile: str, minor_threshold: float) -> Attractiveness:
        head, card = load_beauty_head(DEFAULT_HEAD_BY_PROFILE.get(profile, "beauty_head_all"))
        return cls(head, card, minor_threshold)

    @property
    def version(self) -> str:
        return f"{self.card.name}@{self.card.version}"

    def tap(self, extra_members: Sequence[str] = ()) -> dict[str, bool]:
        """Members whose features ``enrich`` needs, with the flip setting they were trained with: hand this to
        ``FaceScorer.score_batch`` so the ensemble's forward pass reads them and no network runs twice."""
        return {name: FLIP_BY_MEMBER.get(name, True) for name in set(head_members(self.head)) | set(extra_members)}

    def enrich(
        self,
        scorer: FaceScorer,
        chips: Sequence[np.ndarray],
        landmarks: Sequence[np.ndarray],
        scores: list[FaceScore],
        extra_members: Sequence[str] = (),
    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, np.ndarray]]]:
        """Per face: attractiveness, word and spread — or the withheld notice with its reason.

        Also returns the adult faces' feature blocks (face index → blocks) of the head's members plus
        ``extra_members``, so personalization reuses this one pass instead of running the networks again.
        """
        decisions = [withhold_attractiveness(s.age_probs, self.minor_threshold) for s in scores]
        adults = [i for i, d in enumerate(decisions) if not d.withhold]
        out: list[dict[str, Any]] = [{"p_minor": round(d.p_minor, 3)} for d in decisions]
        for fields, decision in zip(out, decisions, strict=True):
            if decision.withhold:
                fields["withheld_reason"] = decision.reason
        per_face: dict[int, dict[str, np.ndarray]] = {}
        if adults:
            names = sorted(set(head_members(self.head)) | set(extra_members))
            members = {name: scorer.models[name] for name in names if name in scorer.models}
            tapped = scores[adults[0]].features  # read in the ensemble's pass (``tap``); the rest runs here
            blocks = {k: np.stack([scores[i].features[k] for i in adults]) for k in tapped
                      if k.split(".", 1)[0] in members}
            untapped = {n: m for n, m in members.items() if not any(k.startswith(f"{n}.") for k in tapped)}
            if untapped:
                blocks.update(chip_features(untapped, [chips[i] for i in adults], [landmarks[i] for i in adults]))
            for row, (i, beauty) in enumerate(zip(adults, score_blocks(self.head, blocks), strict=True)):
                out[i].update({
                    "attractiveness": round(min(10.0, max(1.0, beauty.score)), ROUND),
                    "attractiveness_word": beauty.word,
                    "attractiveness_spread": round(beauty.spread, ROUND),
                })
                per_face[i] = {name: values[row] for name, values in blocks.items()}
        return out, per_face
