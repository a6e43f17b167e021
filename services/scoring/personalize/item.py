"""A face's item vector learned from the ratings it receives, on top of what its pixels predict ("warm" faces).

A new face starts cold: the visual ridge map gives its [b_i, q_i] from features alone. Every rating it then gets
from a rater with known weights [p_u, b_u] is one more linear observation of it,

    rating − μ − b_u ≈ b_i + q_i · p_u  =  z_u · v_i,   z_u = [1, p_u],  v_i = [b_i, q_i],

so with the visual prediction as a Gaussian prior N(m_i, diag(s²)) — s² being the map's leave-one-out residual
variance per output — the posterior mean is a ridge towards the pixels' guess:

    v_i = (diag(1/s²) + ZᵀZ / σ²)⁻¹ (m_i / s² + Zᵀ t / σ²).

The state keeps ZᵀZ and Zᵀt, so an update is O(K²) and the estimate is exact at any time, plus who rated (for
idempotency) and their ratings (so a new model version can replay them). It is the paper's collaborative filtering
for items that stop being new: a face rated by a few dozen visitors is predicted from their ratings, not only from
its pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.scoring.personalize.rater import decode_state, encode_state

ITEM_STATE_FORMAT = 1  # bump when the JSON layout changes


def item_posterior(
    prior_mean: np.ndarray, prior_var: np.ndarray, ztz: np.ndarray, ztt: np.ndarray, noise_var: float,
) -> np.ndarray:
    """Posterior mean of v = [b_i, q_i] (rows of ``prior_mean`` [T] or [N, T]; ``ztz`` [T, T] or [N, T, T])."""
    m = np.atleast_2d(np.asarray(prior_mean, dtype=np.float64))
    precision = 1.0 / np.maximum(np.asarray(prior_var, dtype=np.float64), 1e-12)
    a = np.diag(precision)[None] + np.asarray(ztz, dtype=np.float64).reshape(-1, m.shape[1], m.shape[1]) / noise_var
    b = m * precision + np.asarray(ztt, dtype=np.float64).reshape(-1, m.shape[1]) / noise_var
    out = np.linalg.solve(a, b[..., None])[..., 0]
    return out if np.ndim(prior_mean) == 2 else out[0]


def rating_design(rater_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """(z_u = [1, p_u], b_u) from a rater's weights [p_u, b_u]: what one of their ratings says about a face."""
    w = np.asarray(rater_weights, dtype=np.float64).reshape(-1)
    return np.concatenate([[1.0], w[:-1]]), float(w[-1])


def observations_from_ratings(
    rater_weights: np.ndarray, ratings: np.ndarray, mu: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(ZᵀZ, Zᵀt) of one face's ratings by raters with weights [R, K + 1] (rows [p_u, b_u])."""
    w = np.atleast_2d(np.asarray(rater_weights, dtype=np.float64))
    z = np.hstack([np.ones((len(w), 1)), w[:, :-1]])
    t = np.asarray(ratings, dtype=np.float64).reshape(-1) - mu - w[:, -1]
    return z.T @ z, z.T @ t


@dataclass
class ItemState:
    """What the service stores per face: sufficient statistics of its ratings, who gave them, the model version."""

    face: str
    model_version: str
    ztz: np.ndarray  # [K + 1, K + 1] Σ z zᵀ
    ztt: np.ndarray  # [K + 1] Σ z (rating − μ − b_u)
    raters: list[str] = field(default_factory=list)  # each rater counts once (redelivery, double clicks)
    ratings: list[float] = field(default_factory=list)  # model-scale ratings, parallel to raters (for a replay)
    rating_scale: tuple[float, float] | None = None  # (μ, rating sd) of the model whose scale ``ratings`` are on

    @classmethod
    def new(cls, face: str, model_version: str, dim: int,
            rating_scale: tuple[float, float] | None = None) -> ItemState:
        return cls(face, model_version, np.zeros((dim, dim)), np.zeros(dim), [], [], rating_scale)

    @property
    def n_ratings(self) -> int:
        return len(self.raters)

    def with_rating(self, rater_id: str, rater_weights: np.ndarray, rating: float, mu: float) -> ItemState:
        """A new state with one more rating (model scale) by a rater whose weights were [p_u, b_u] at the time."""
        z, bias = rating_design(rater_weights)
        return ItemState(self.face, self.model_version, self.ztz + np.outer(z, z),
                         self.ztt + z * (float(rating) - mu - bias), [*self.raters, rater_id],
                         [*self.ratings, float(rating)], self.rating_scale)

    def to_bytes(self) -> bytes:
        return encode_state(ITEM_STATE_FORMAT, {
            "face": self.face, "model_version": self.model_version, "ztz": self.ztz.tolist(), "ztt": self.ztt.tolist(),
            "raters": self.raters, "ratings": self.ratings,
            "rating_scale": None if self.rating_scale is None else list(self.rating_scale),
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemState:
        payload = decode_state(data, ITEM_STATE_FORMAT, "item")
        return cls(payload["face"], payload["model_version"], np.array(payload["ztz"], dtype=np.float64),
                   np.array(payload["ztt"], dtype=np.float64), list(payload["raters"]),
                   [float(r) for r in payload["ratings"]],
                   None if payload.get("rating_scale") is None else tuple(map(float, payload["rating_scale"])))
