"""From pixels to the latent item space: ridge regression of a face's item bias and factors on its visual features.

This is the paper's key step for cold-start items: a face nobody has rated yet gets [q_i, b_i] predicted from its
features, so every rater's personal model applies to it at once. Ridge's strength is picked by exact leave-one-out
error (computed for every alpha from a single SVD), because the training faces are few (82 on an FRL fold) and a
separate validation split would waste them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 33))  # in units of standardized feature variance
STD_FLOOR = 1e-6  # constant features stay unscaled


@dataclass
class RidgeMap:
    """y ≈ ((x − mean) · scale) @ weight + bias, multi-output; ``alpha`` is the LOO-chosen penalty."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # [D, T]
    bias: np.ndarray  # [T]
    alpha: float
    loo_mse: float
    loo_mse_columns: np.ndarray | None = None  # [T] per output: how far pixels miss each item coordinate

    @property
    def residual_var(self) -> np.ndarray:
        """[T] leave-one-out residual variance per output (the prior variance of a face's item vector)."""
        if self.loo_mse_columns is not None:
            return self.loo_mse_columns
        return np.full(self.weight.shape[1], self.loo_mse)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(np.asarray(x, dtype=np.float64)) - self.mean) * self.scale) @ self.weight + self.bias


def fit_ridge_loo(
    x: np.ndarray, y: np.ndarray, alphas: Sequence[float] = RIDGE_ALPHAS, column_weights: np.ndarray | None = None,
) -> RidgeMap:
    """Standardise ``x``, fit ridge for every alpha and keep the one with the lowest leave-one-out MSE.

    ``column_weights`` multiply the standardised columns (e.g. 1/√(block size), so a 2048-dim block does not drown a
    one-column global score in the shared penalty).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    y2 = y[:, None] if y.ndim == 1 else y
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = 1.0 / np.where(std > STD_FLOOR, std, 1.0)
    if column_weights is not None:
        scale = scale * np.asarray(column_weights, dtype=np.float64)
    xs = (x - mean) * scale
    y_mean = y2.mean(axis=0)
    yc = y2 - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ yc
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    n = len(x)
    for alpha in alphas:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink[:, None] * uty)
        hat = (u**2) @ shrink + 1.0 / n  # leverage, including the intercept
        loo = (yc - fitted) / (1.0 - hat)[:, None]
        mse = float((loo**2).mean())
        if best is None or mse < best[1]:
            best = (alpha, mse, vt.T @ ((s / (s**2 + alpha))[:, None] * uty), (loo**2).mean(axis=0))
    assert best is not None
    alpha, mse, weight, mse_columns = best
    return RidgeMap(mean, scale, weight, y_mean, alpha, mse, mse_columns)
