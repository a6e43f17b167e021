"""Which faces to ask a rater about next: the ones whose rating would teach us most about this rater.

A rating of face i reduces the posterior covariance of the rater vector w along x_i = [q_i, 1]; the predictive
variance x_iᵀ A⁻¹ x_i (A = posterior precision) is what we are unsure about for that face, and picking greedily by it,
updating A after each pick as if the rating had been given, is the classic D-optimal / uncertainty-sampling design:
it spreads the picks over different factor directions instead of asking about five near-identical faces.

``pick_queue`` is the rate-others queue built on it: it shares the slots with the least-rated faces, because a
face's first ratings teach every later viewer about it (personalize/item.py).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

WARM_TARGET = 20  # ratings after which a face is predicted about as well as by its crowd mean (FRL: 0.709 vs 0.709)
WARMUP_SHARE = 0.5  # share of each batch of faces to rate that goes to the least-rated faces below WARM_TARGET


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


def pick_queue(
    posterior_precision: np.ndarray,
    item_vectors: np.ndarray,
    counts: np.ndarray,
    n: int,
    noise_var: float,
    exclude: np.ndarray | None = None,
    warmup_share: float = WARMUP_SHARE,
) -> list[int]:
    """Up to ``n`` candidates alternating between the most informative for the rater and the least-rated faces.

    ``counts`` [N]: ratings each candidate has received; faces below ``WARM_TARGET`` take up to ``warmup_share`` of
    the slots, fewest ratings first (stable: ties keep the caller's order)."""
    counts = np.asarray(counts)
    available = np.ones(len(counts), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    cold = np.flatnonzero(available & (counts < WARM_TARGET))
    warmup = cold[np.argsort(counts[cold], kind="stable")][: min(len(cold), math.ceil(n * warmup_share))]
    taken = ~available
    taken[warmup] = True
    informative = pick_informative(posterior_precision, item_vectors, n - len(warmup), noise_var, taken)
    order = [i for pair in itertools.zip_longest(informative, warmup.tolist()) for i in pair if i is not None]
    return [int(i) for i in order[:n]]
