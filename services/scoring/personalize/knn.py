"""Baseline: predict a rater's rating of a new face from their own ratings of the faces that look most like it.

Why keep it: it is the obvious personalisation without any collaborative signal (the paper's comparison point);
if the latent-factor model does not beat it, the collaborative part earns nothing.
"""

from __future__ import annotations

import numpy as np

KNN_NEIGHBOURS = 3  # few: a rater's k ≤ 20 revealed faces rarely contain more than a couple of true look-alikes


def visual_knn_predict(
    revealed_features: np.ndarray,
    revealed_ratings: np.ndarray,
    target_features: np.ndarray,
    neighbours: int = KNN_NEIGHBOURS,
) -> np.ndarray:
    """Similarity-weighted mean rating of the ``neighbours`` most cosine-similar revealed faces, per target face.

    Features should already be standardised (the caller's scaler): cosine on raw activations is dominated by the
    channels with the largest mean.
    """
    rev = np.asarray(revealed_features, dtype=np.float64)
    tgt = np.atleast_2d(np.asarray(target_features, dtype=np.float64))
    ratings = np.asarray(revealed_ratings, dtype=np.float64)
    rev = rev / np.maximum(np.linalg.norm(rev, axis=1, keepdims=True), 1e-12)
    tgt = tgt / np.maximum(np.linalg.norm(tgt, axis=1, keepdims=True), 1e-12)
    sim = tgt @ rev.T
    m = min(neighbours, len(ratings))
    top = np.argsort(-sim, axis=1)[:, :m]
    w = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0) + 1e-6  # dissimilar neighbours still count a little
    return (w * ratings[top]).sum(axis=1) / w.sum(axis=1)
