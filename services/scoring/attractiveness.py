"""Attractiveness for the scoring service: the committed beauty head on the members' features, with minors withheld.

Runs inside the same micro-batch as the age/gender ensemble (one call per batch), on the scorer's already-loaded
member networks; the minors rule (P(age < 18) above the threshold → no score, global or personal) is applied to the
ensemble's age distribution before anything is shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from libs.common.modelcard import ModelCard
from services.scoring.beauty.features import (
    ARCFACE,
    ARCFACE_MEMBER,
    ARCFACE_MEMBER_BLOCK,
    EMBEDDERS,
    EMBEDDING,
    EMBEDDING_MEMBER,
    EMBEDDING_MEMBER_BLOCK,
    HOOKS,
    embedder_card,
    embedder_features,
    load_embedder,
    profile_embedders,
)
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
    """The loaded head plus the minors threshold; ``enrich`` returns the extra result fields per face.

    ``embedders``: the face embeddings (``features.EMBEDDERS``: dlib's, InsightFace's MobileFaceNet), each loaded
    only when the head (or the ``extra_members`` given to ``load``) reads its blocks. Where the profile's ensemble has
    the embedding gender member (``features.EMBEDDING_MEMBER``: same network as dlib's embedding, same chip, same
    flip TTA), ``tap`` reads the dlib blocks in that member's pass and nothing runs twice; every other embedder runs
    in ``enrich``, once per adult face (with its mirror, as trained). The ``commercial-safe`` profile never loads a
    research-only embedder, even for personalization: blocks that need one stay absent (no personal vector then).
    """

    head: BeautyHead
    card: ModelCard
    minor_threshold: float
    embedders: dict[str, nn.Module] = field(default_factory=dict)

    @classmethod
    def load(cls, profile: str, minor_threshold: float, models_dir: Path | None = None,
             extra_members: Sequence[str] = ()) -> Attractiveness:
        head, card = load_beauty_head(DEFAULT_HEAD_BY_PROFILE.get(profile, "beauty_head_all"))
        embedders = {}
        chip = np.full((CHIP_SIZE, CHIP_SIZE, 3), 128, dtype=np.uint8)  # warm-up, as FaceScorer.warmup does
        allowed = profile_embedders(profile)
        missing = (set(EMBEDDERS) - set(allowed)) & set(head_members(head))
        if missing:
            raise ValueError(f"the {profile} profile's head reads research-only features: {sorted(missing)}")
        for name in sorted(set(allowed) & (set(head_members(head)) | set(extra_members))):
            embedders[name] = load_embedder(name, models_dir)
            embedder_features(name, embedders[name], [chip], [CHIP_TEMPLATE], flip=FLIP_BY_MEMBER.get(name, True))
        return cls(head, card, minor_threshold, embedders)

    @property
    def head_embedders(self) -> set[str]:
        return set(EMBEDDERS) & set(head_members(self.head))

    @property
    def version(self) -> str:
        return f"{self.card.name}@{self.card.version}"

    @cached_property
    def model_versions(self) -> dict[str, str]:
        """The head and the face embeddings it runs, for the result document (beside the ensemble members')."""
        return {self.card.name: self.card.version, **{name: embedder_card(name).version for name in self.embedders}}

    def tap(self, extra_members: Sequence[str] = ()) -> dict[str, bool]:
        """Members whose features ``enrich`` needs, with the flip setting they were trained with: hand this to
        ``FaceScorer.score_batch`` so the ensemble's forward pass reads them and no network runs twice."""
        names = set(head_members(self.head)) | set(extra_members)
        tap = {name: FLIP_BY_MEMBER.get(name, True) for name in names}
        if EMBEDDING in names:  # where the ensemble has the embedding gender member, its pass carries the embedding
            tap[EMBEDDING_MEMBER] = FLIP_BY_MEMBER.get(EMBEDDING, True)
        if ARCFACE in names:  # the ArcFace age member's pass (face and mirror) carries the ARCFACE blocks
            tap[ARCFACE_MEMBER] = FLIP_BY_MEMBER.get(ARCFACE, True)
        return tap

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
            adult_chips, adult_landmarks = [chips[i] for i in adults], [landmarks[i] for i in adults]
            if untapped:
                blocks.update(chip_features(untapped, adult_chips, adult_landmarks))
            for name in sorted(set(EMBEDDERS) & set(names)):
                if name == EMBEDDING and EMBEDDING_MEMBER_BLOCK in tapped:  # read in the gender member's pass
                    blocks.update(_member_blocks([scores[i].features for i in adults], EMBEDDING_MEMBER, EMBEDDING))
                    continue
                if name == ARCFACE and ARCFACE_MEMBER_BLOCK in tapped:  # read in the ArcFace age member's pass
                    blocks.update(_member_blocks([scores[i].features for i in adults], ARCFACE_MEMBER, ARCFACE,
                                                 normalise_emb=True))
                    continue
                if name not in self.embedders:
                    if name in self.head_embedders:
                        raise RuntimeError(f"{name} features requested but not loaded (Attractiveness.load)")
                    continue  # an extra member's blocks this profile does not run (personalization goes without)
                self.embedders[name].to(scorer.device)  # a no-op after the first batch
                blocks.update(embedder_features(name, self.embedders[name], adult_chips, adult_landmarks,
                                                flip=FLIP_BY_MEMBER.get(name, True)))
            for row, (i, beauty) in enumerate(zip(adults, score_blocks(self.head, blocks), strict=True)):
                out[i].update({
                    "attractiveness": round(min(10.0, max(1.0, beauty.score)), ROUND),
                    "attractiveness_word": beauty.word,
                    "attractiveness_spread": round(beauty.spread, ROUND),
                })
                per_face[i] = {name: values[row] for name, values in blocks.items()}
        return out, per_face


def _member_blocks(
    features: Sequence[dict[str, np.ndarray]], member: str, embedder: str, normalise_emb: bool = False
) -> dict[str, np.ndarray]:
    """An embedder's blocks as an ensemble member running the same network on the same crop read them, renamed
    from ``<member>.<layer>`` to ``<embedder>.<layer>``: the embedding gender member's are dlib's embedding blocks,
    the ArcFace age member's the ArcFace blocks (whose embedding block is the face and mirror mean, L2-normalised,
    as ``arcface_mbf.embed`` gives it: ``normalise_emb``)."""
    prefix = f"{member}."
    layers = {key[len(prefix):] for key in features[0] if key.startswith(prefix)}
    wanted = {layer for layer in layers if layer.split("_", 1)[0] in HOOKS[member]}
    out = {f"{embedder}.{layer}": np.stack([f[prefix + layer] for f in features]) for layer in sorted(wanted)}
    if normalise_emb:
        emb = out[f"{embedder}.emb"]
        out[f"{embedder}.emb"] = (emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)).astype(emb.dtype)
    return out
