"""Attractiveness heads on top of frozen member features: ridge regression and a DEX-style softmax over score bins.

Why two: ridge is the strongest simple regressor for a few thousand faces × a few thousand features; the DEX head
(softmax over score bins, prediction = expectation, as DEX does for age) also gives a per-face distribution whose
spread says how much raters would disagree, which becomes the calibrated spread. Cross-validation picks the head.

Everything a head needs at inference (block names, standardisation, weights, calibration) is in one small ``.npz``;
no scikit-learn at inference, numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCORE_MIN, SCORE_MAX = 1.0, 10.0  # MEBeauty's rating scale; every score is clipped into it
BIN_STEP = 0.5  # DEX bins every half point: finer than rater noise (~1.5 points sd), coarse enough to learn
SCORE_BINS = np.arange(SCORE_MIN, SCORE_MAX + BIN_STEP / 2, BIN_STEP)
ONE_SIGMA_COVERAGE = 0.6827  # the spread is calibrated so this share of held-out faces lies within ±spread
STD_FLOOR = 1e-6  # features constant on the training set are left unscaled instead of divided by ~0


@dataclass
class Standardizer:
    """Per-dimension (x − mean) / std fitted on training faces; blocks optionally down-weighted by √(block size)."""

    mean: np.ndarray
    scale: np.ndarray  # multiply by this (1 / std, times the block weight)

    @classmethod
    def fit(cls, x: np.ndarray, block_sizes: Sequence[int] = (), balance_blocks: bool = False) -> Standardizer:
        """Fit on ``x``; with ``balance_blocks`` every block contributes the same total variance (≈ 1).

        Why balance: a 2048-dim spatial grid would otherwise outweigh a 1-dim P(female) by 2048× in the ridge penalty.
        """
        std = x.std(axis=0)
        scale = 1.0 / np.where(std > STD_FLOOR, std, 1.0)
        if balance_blocks and block_sizes:
            weights = np.concatenate([np.full(n, 1.0 / np.sqrt(n)) for n in block_sizes])
            scale = scale * weights
        return cls(x.mean(axis=0), scale)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) * self.scale


def centred_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of the column-centred matrix (shared by the ridge path and the DEX head's PCA basis)."""
    return np.linalg.svd(x - x.mean(axis=0), full_matrices=False)


def ridge_path(
    x: np.ndarray, y: np.ndarray, alphas: Sequence[float],
    svd: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> list[tuple[np.ndarray, float]]:
    """Ridge solutions (w, b) for several alphas from one SVD (cheap to scan alphas by validation)."""
    x_mean, y_mean = x.mean(axis=0), y.mean()
    u, s, vt = svd if svd is not None else centred_svd(x)
    uty = u.T @ (y - y_mean)
    out = []
    for alpha in alphas:
        w = vt.T @ (s / (s**2 + alpha) * uty)
        out.append((w, float(y_mean - x_mean @ w)))
    return out


def soft_labels(y: np.ndarray, sigma: float, bins: np.ndarray = SCORE_BINS) -> np.ndarray:
    """Gaussian label distributions over the bins (DLDL): neighbouring scores share probability mass."""
    logits = -0.5 * ((bins[None, :] - y[:, None]) / sigma) ** 2
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def fit_dex(
    x: np.ndarray, targets: np.ndarray, weight_decay: float, epochs: int = 300, lr: float = 0.05, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A linear softmax over the score bins trained with cross-entropy against label distributions (full batch).

    Full-batch Adam on a few thousand faces converges in a few hundred steps in well under a minute on CPU.
    """
    import torch

    torch.manual_seed(seed)
    xt = torch.as_tensor(x, dtype=torch.float32)
    tt = torch.as_tensor(targets, dtype=torch.float32)
    layer = torch.nn.Linear(x.shape[1], targets.shape[1])
    torch.nn.init.zeros_(layer.weight)
    with torch.no_grad():
        layer.bias.copy_(torch.log(tt.mean(0) + 1e-6))
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        logp = torch.log_softmax(layer(xt), dim=1)
        loss = -(tt * logp).sum(1).mean() + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        opt.step()
    return layer.weight.detach().numpy().T.astype(np.float64), layer.bias.detach().numpy().astype(np.float64)


def dex_predict(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, bins: np.ndarray = SCORE_BINS
                ) -> tuple[np.ndarray, np.ndarray]:
    """(expected score, std of the predicted distribution) per face."""
    logits = x @ weight + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    mean = p @ bins
    std = np.sqrt(np.maximum(p @ bins**2 - mean**2, 0.0))
    return mean, std


def calibrate_spread(abs_error: np.ndarray, raw_spread: np.ndarray) -> float:
    """Factor c such that ``ONE_SIGMA_COVERAGE`` of the faces have |error| ≤ c · raw_spread (out-of-fold faces)."""
    return float(np.quantile(abs_error / np.maximum(raw_spread, 1e-9), ONE_SIGMA_COVERAGE))


@dataclass
class BeautyHead:
    """A trained head: which feature blocks, how to standardise them, the weights, and the spread calibration.

    ``kind`` is 'ridge', 'dex' or 'blend' (the mean of both). The spread of a ridge-only head is constant (its
    calibrated validation error); the DEX and blend heads scale the DEX distribution's std per face.
    """

    kind: str
    blocks: list[str]
    standardizer: Standardizer
    ridge_w: np.ndarray
    ridge_b: float
    dex_w: np.ndarray
    dex_b: np.ndarray
    spread_factor: float
    meta: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.standardizer.mean.shape[0])

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score on 1..10, calibrated spread) for [N, D] stacked features (or one [D] vector → arrays of 1)."""
        x = self.standardizer(np.atleast_2d(features))
        ridge = x @ self.ridge_w + self.ridge_b
        dex_mean, dex_std = dex_predict(x, self.dex_w, self.dex_b) if self.dex_w.size else (ridge, np.ones(len(x)))
        if self.kind == "ridge":
            score, raw = ridge, np.ones(len(x))
        elif self.kind == "dex":
            score, raw = dex_mean, dex_std
        else:
            score, raw = (ridge + dex_mean) / 2, dex_std
        return np.clip(score, SCORE_MIN, SCORE_MAX), raw * self.spread_factor

    def save(self, path: Path) -> None:
        """One compressed .npz (float32 weights keep it small)."""
        np.savez_compressed(
            path, kind=np.array(self.kind), blocks=np.array(json.dumps(self.blocks)),
            mean=self.standardizer.mean.astype(np.float32), scale=self.standardizer.scale.astype(np.float32),
            ridge_w=self.ridge_w.astype(np.float32), ridge_b=np.array(self.ridge_b),
            dex_w=self.dex_w.astype(np.float32), dex_b=self.dex_b.astype(np.float32),
            spread_factor=np.array(self.spread_factor), meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: Path) -> BeautyHead:
        with np.load(path, allow_pickle=False) as d:
            return cls(
                kind=str(d["kind"]), blocks=json.loads(str(d["blocks"])),
                standardizer=Standardizer(d["mean"].astype(np.float64), d["scale"].astype(np.float64)),
                ridge_w=d["ridge_w"].astype(np.float64), ridge_b=float(d["ridge_b"]),
                dex_w=d["dex_w"].astype(np.float64), dex_b=d["dex_b"].astype(np.float64),
                spread_factor=float(d["spread_factor"]), meta=json.loads(str(d["meta"])),
            )
