"""Which faces to ask a rater about next: the ones whose rating would teach us most about this rater.

A rating of face i reduces the posterior covariance of the rater vector w along x_i = [q_i, 1]; the predictive
variance x_iᵀ A⁻¹ x_i (A = posterior precision) is what we are unsure about for that face, and picking greedily by it,
updating A after each pick as if the rating had been given, is the classic D-optimal / uncertainty-sampling design:
it spreads the picks over different factor directions instead of asking about five near-identical faces.
"""

from __future__ import annotations

import numpy as np


def pick_informative(
    posterior_precision: np.ndarray,
    item_vectors: np.ndarray,
    n: int,
    noise_var: float,
    exclude: np.ndarray | None = None,
) -> list[int]:
    """Indices of up to ``n`` candidate faces (rows of ``item_vectors``), most informative first."""
    a = np.array(posterior_precision, dtype=np.float64)
    x = np.asarray(item_vectors, dtype=np.float64)
    available = np.ones(len(x), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    picks: list[int] = []
    for _ in range(min(n, int(available.sum()))):
        cov = np.linalg.inv(a)
        variance = np.einsum("ij,jk,ik->i", x, cov, x)
        variance[~available] = -np.inf
        best = int(np.argmax(variance))
        picks.append(best)
        available[best] = False
        a = a + np.outer(x[best], x[best]) / noise_var
    return picks
