"""A rater's personal model, fitted in closed form and updated online, one rating at a time.

Model: rating ≈ offset_i + x_i · w, with x_i = [q_i, 1] the face's item vector and offset_i = μ + b_i, and w =
[p_u, b_u] the rater's unknowns. With a Gaussian prior N(m0, Λ0⁻¹) and rating noise σ², the posterior mean is

    w = (Λ0 + XᵀX / σ²)⁻¹ (Λ0 m0 + Xᵀ(y − offset) / σ²)

— ridge regression towards the prior mean. The state keeps only the sufficient statistics XᵀX and Xᵀ(y − offset)
(plus the history, so a new model version can replay it), so an update is O(K²) and the fit is exact at any time.
Everything serialises to JSON bytes: the service keeps states in the blob store (or ClickHouse) and a restart loses
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

STATE_FORMAT = 1  # bump when the JSON layout changes


def encode_state(fmt: int, fields: dict) -> bytes:
    """A state as UTF-8 JSON with its format number, stable key order (diff-able, storable anywhere)."""
    return json.dumps({"format": fmt, **fields}, sort_keys=True, separators=(",", ":")).encode()


def decode_state(data: bytes, fmt: int, kind: str) -> dict:
    """The fields of a state written by ``encode_state`` in format ``fmt``; ValueError for any other format."""
    payload = json.loads(data)
    if payload.get("format") != fmt:
        raise ValueError(f"unsupported {kind} state format {payload.get('format')!r}")
    return payload


def fit_rater_closed_form(
    item_vectors: np.ndarray,
    residuals: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    noise_var: float,
) -> np.ndarray:
    """Posterior mean of w given rows x_i and residuals y_i − offset_i (works with zero rows: returns the prior)."""
    x = np.asarray(item_vectors, dtype=np.float64).reshape(-1, len(prior_mean))
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    return _solve(x.T @ x, x.T @ r, prior_mean, prior_precision, noise_var)


def _solve(xtx: np.ndarray, xtr: np.ndarray, prior_mean: np.ndarray, prior_precision: np.ndarray,
           noise_var: float) -> np.ndarray:
    a = prior_precision + xtx / noise_var
    b = prior_precision @ prior_mean + xtr / noise_var
    return np.linalg.solve(a, b)


@dataclass
class RaterState:
    """What the service stores per rater: sufficient statistics, history, demographics and the model version."""

    rater_id: str
    model_version: str
    xtx: np.ndarray  # [K + 1, K + 1] Σ x xᵀ
    xtr: np.ndarray  # [K + 1] Σ x (y − offset)
    history: list[dict] = field(default_factory=list)  # [{"face": key, "rating": model-scale rating}]
    demographics: dict | None = None  # {"sex": .., "age": .., "preference": ..} when the rater told us

    @classmethod
    def new(cls, rater_id: str, model_version: str, dim: int, demographics: dict | None = None) -> RaterState:
        return cls(rater_id, model_version, np.zeros((dim, dim)), np.zeros(dim), [], demographics)

    @property
    def n_ratings(self) -> int:
        return len(self.history)

    def rated_faces(self) -> set[str]:
        return {h["face"] for h in self.history}

    def with_rating(self, face: str, item_vector: np.ndarray, item_offset: float, rating: float) -> RaterState:
        """A new state with one more rating (states are values: the caller stores the returned one)."""
        x = np.asarray(item_vector, dtype=np.float64)
        return RaterState(
            self.rater_id, self.model_version, self.xtx + np.outer(x, x), self.xtr + x * (rating - item_offset),
            [*self.history, {"face": face, "rating": float(rating)}], self.demographics,
        )

    def weights(self, prior_mean: np.ndarray, prior_precision: np.ndarray, noise_var: float) -> np.ndarray:
        """The rater's current [p_u, b_u] (closed form; the prior alone before any rating)."""
        return _solve(self.xtx, self.xtr, prior_mean, prior_precision, noise_var)

    def posterior_precision(self, prior_precision: np.ndarray, noise_var: float) -> np.ndarray:
        """Λ0 + XᵀX / σ²: how sure we are about w (the face picker maximises what a rating would add)."""
        return prior_precision + self.xtx / noise_var

    def to_bytes(self) -> bytes:
        """UTF-8 JSON, stable key order (diff-able, storable anywhere)."""
        return encode_state(STATE_FORMAT, {
            "rater_id": self.rater_id, "model_version": self.model_version, "xtx": self.xtx.tolist(),
            "xtr": self.xtr.tolist(), "history": self.history, "demographics": self.demographics,
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> RaterState:
        payload = decode_state(data, STATE_FORMAT, "rater")
        return cls(payload["rater_id"], payload["model_version"], np.array(payload["xtx"], dtype=np.float64),
                   np.array(payload["xtr"], dtype=np.float64), list(payload["history"]), payload["demographics"])
