"""A gender member on dlib's face embedding: the CC0 embedding network + a logistic regression trained on UTKFace.

Why: on UTKFace's held-out portion a linear probe on the 128-d embedding reaches 0.93 (benchmarks/results/
face_embedding.md b.), above every published gender member (CC0 net 0.916, WRN 0.889), and it errs on other faces
than the CC0 net, so the ensemble's P(female) mix gains from both (benchmarks/results/gender_embedding.md).

Weights: the embedding's converted weights from the model cache (``embedding_registry``; CC0) and the committed
head ``services/scoring/weights/dlib_embedding_gender.pt`` (a 128→1 linear layer with the training standardisation
folded in; trained on UTKFace's train portion by ``benchmarks/gender_embedding_train.py`` — so the member is
non-commercial research only, whatever the embedding's licence). Input: the embedding's own 150-px dlib chip
(padding 0.25), ``(x − mean) / 256`` — the registry config carries it, so ``members.run_member`` runs it like any
member (flip TTA averages the face's and the mirror's P(female)). Output: [N, 2] = (P(female), P(male)).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from services.scoring.models.dlib_face_embedding import EMBEDDING_SIZE, DlibFaceEmbedding

NAME = "dlib_embedding_gender"
HEAD_FILE = f"{NAME}.pt"


class EmbeddingGender(nn.Module):
    """embedding(x) → linear → sigmoid → (P(female), P(male))."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = DlibFaceEmbedding()
        self.head = nn.Linear(EMBEDDING_SIZE, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p_female = torch.sigmoid(self.head(self.embedding(x).float())).squeeze(1)
        return torch.stack([p_female, 1.0 - p_female], dim=1)


def embedding_gender() -> EmbeddingGender:
    """The member's architecture (weights loaded by ``registry.create_model``)."""
    return EmbeddingGender()


def head_state(weight: torch.Tensor, bias: torch.Tensor) -> dict[str, torch.Tensor]:
    """The committed head file's content: ``nn.Linear(128, 1)``'s state dict."""
    return {"weight": weight.reshape(1, EMBEDDING_SIZE).float(), "bias": bias.reshape(1).float()}


def load_member(model: EmbeddingGender, embedding_weights: Path, head_weights: Path) -> EmbeddingGender:
    """Load the embedding's converted weights and the committed head (strict) into ``model``."""
    model.embedding.load_state_dict(torch.load(embedding_weights, map_location="cpu", weights_only=True), strict=True)
    model.head.load_state_dict(torch.load(head_weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval()
