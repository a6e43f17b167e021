"""Biased matrix factorisation r̂(u, i) = μ + b_u + b_i + p_u · q_i, fitted by alternating ridge solves (ALS).

Why ALS on dense matrices with a mask: the sets are small (FRL: 2.5 k raters × 102 faces, MEBeauty: 360 × 2.5 k), so
every per-rater / per-face (rank + 1)-dim ridge system can be built with one einsum and solved in one batched call:
exact, deterministic, seconds on CPU. Biases ride along as an extra coordinate fixed to 1 on the other side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_RANK = 8  # latent dimensions: the FRL matrix's rater-centred spectrum flattens after a handful
DEFAULT_REG = 5.0  # ridge on factors and biases (in "ratings" units); tuned coarsely on FRL training faces
DEFAULT_ITERS = 20  # ALS converges to within 1e-4 RMSE in well under 20 sweeps on these sizes
INIT_SCALE = 0.1  # small random factors break the symmetry without dominating the first solves


@dataclass
class BiasedMF:
    """A fitted model: global mean, rater and item biases and factors (rows follow the caller's index order)."""

    mu: float
    rater_bias: np.ndarray  # [U]
    item_bias: np.ndarray  # [I]
    rater_factors: np.ndarray  # [U, K]
    item_factors: np.ndarray  # [I, K]

    @property
    def rank(self) -> int:
        return int(self.item_factors.shape[1])

    def predict(self) -> np.ndarray:
        """The full [U, I] matrix of predicted ratings."""
        return (self.mu + self.rater_bias[:, None] + self.item_bias[None, :]
                + self.rater_factors @ self.item_factors.T)

    def item_vectors(self) -> np.ndarray:
        """[I, K + 1] items as seen by a rater fit: factors and a trailing 1 that multiplies the rater bias."""
        return np.hstack([self.item_factors, np.ones((len(self.item_bias), 1))])


def _solve_side(ratings: np.ndarray, mask: np.ndarray, other: np.ndarray, reg: float) -> np.ndarray:
    """Ridge solve for every row: minimise Σ_masked (r − x·o)² + reg |x|², with ``other`` [J, D] fixed."""
    d = other.shape[1]
    outer = (other[:, :, None] * other[:, None, :]).reshape(len(other), d * d)
    gram = (mask @ outer).reshape(-1, d, d) + reg * np.eye(d)[None]  # one BLAS matmul for every row's Gram matrix
    rhs = (ratings * mask) @ other
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


def fit_biased_mf(
    ratings: np.ndarray,
    mask: np.ndarray | None = None,
    rank: int = DEFAULT_RANK,
    reg: float = DEFAULT_REG,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
) -> BiasedMF:
    """Fit on a [U, I] matrix; ``mask`` (same shape, 1 = observed) marks the ratings to use (default: non-NaN)."""
    ratings = np.asarray(ratings, dtype=np.float64)
    mask = (~np.isnan(ratings)).astype(np.float64) if mask is None else np.asarray(mask, dtype=np.float64)
    r = np.where(mask > 0, np.nan_to_num(ratings), 0.0)
    mu = float(r.sum() / mask.sum())
    n_raters, n_items = r.shape
    rng = np.random.default_rng(seed)
    p = rng.normal(0.0, INIT_SCALE, (n_raters, rank))
    q = rng.normal(0.0, INIT_SCALE, (n_items, rank))
    bu, bi = np.zeros(n_raters), np.zeros(n_items)
    for _ in range(iters):
        # raters: unknowns [p_u, b_u]; items contribute [q_i, 1]; target r − μ − b_i
        sol = _solve_side(r - mu - bi[None, :], mask, np.hstack([q, np.ones((n_items, 1))]), reg)
        p, bu = sol[:, :rank], sol[:, rank]
        sol = _solve_side((r - mu - bu[:, None]).T, mask.T, np.hstack([p, np.ones((n_raters, 1))]), reg)
        q, bi = sol[:, :rank], sol[:, rank]
    return BiasedMF(mu, bu, bi, p, q)


def masked_rmse(model: BiasedMF, ratings: np.ndarray, mask: np.ndarray) -> float:
    """RMSE of the model over the masked entries (for tests and tuning)."""
    err = (model.predict() - np.nan_to_num(ratings)) * mask
    return float(np.sqrt((err**2).sum() / mask.sum()))
