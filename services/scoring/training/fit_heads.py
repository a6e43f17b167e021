"""Train K DEX heads on cached backbone features, each on its own bootstrap sample (DEX's ensemble-by-splits).

Why bootstrap: DEX trained its 20 networks on different splits so that their errors decorrelate; a bootstrap sample
does that and leaves ~37 % of the data out-of-bag for each head, which picks that head's epoch count without touching
the held-out evaluation portion. Loss: plain cross-entropy over 101 one-year classes, as in DEX; the age is the
expectation at inference. Augmentation on features: a mirrored view is drawn at random where the cache has one (the
cheap CC0 net), plus Gaussian feature noise (a stand-in for the pixel jitter a full-network run applies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from services.scoring.training.heads import AGE_CLASSES, DexHead, HeadEnsemble, HeadSpec, expected_age

DEFAULT_EPOCHS = 100  # with lr 1e-2 the out-of-bag MAE flattens after ~60–100 epochs on 1–2k faces
BATCH_SIZE = 128
LEARNING_RATE = 1e-2  # 1e-3 was still improving after 400 steps (UTKFace, 1.2k faces); 1e-2 converges in ~60 epochs
WEIGHT_DECAY = 1e-3  # features (2–3k dims) outnumber training faces: a firm L2 keeps the head from memorising
FEATURE_NOISE = 0.1  # std of Gaussian noise on standardised features, per step
FLIP_PROBABILITY = 0.5


@dataclass
class HeadTrainingResult:
    """The trained ensemble and, per head, its bootstrap sample (row indices), out-of-bag MAE curve and kept epoch."""

    ensemble: HeadEnsemble
    oob_mae: list[list[float]]
    best_epoch: list[int]
    bags: list[np.ndarray]


def ages_to_classes(ages: np.ndarray) -> np.ndarray:
    """Integer classes 0..100 (rounded, clipped): DEX's one-year bins."""
    return np.clip(np.rint(np.asarray(ages, dtype=np.float64)), 0, AGE_CLASSES - 1).astype(np.int64)


def soft_targets(classes: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Gaussian label distributions over the 101 classes (σ in years: one, or one per row as [N, 1]), each summing
    to one."""
    grid = torch.arange(AGE_CLASSES, dtype=torch.float32)
    weights = torch.exp(-((grid[None, :] - classes[:, None].float()) ** 2) / (2 * sigma**2))
    return weights / weights.sum(dim=1, keepdim=True)


def train_step(head: DexHead, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               noise: float = FEATURE_NOISE, label_sigma: float = 0.0) -> float:
    """One optimisation step of cross-entropy on a batch; returns the loss before the step.

    ``label_sigma`` > 0 replaces the one-hot target by a Gaussian around the true class (a label distribution):
    neighbouring ages are nearly as right, and with ~1k training faces for 101 classes the one-hot target leaves most
    classes with a handful of examples.
    """
    head.train()
    if label_sigma > 0:
        y = soft_targets(y, label_sigma)
    if noise:
        x = x + noise * head.std * torch.randn_like(x)  # noise in standardised units
    loss = F.cross_entropy(head(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def train_heads(
    features: np.ndarray,
    ages: np.ndarray,
    spec: HeadSpec,
    flipped: np.ndarray | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> HeadTrainingResult:
    """K = ``spec.members`` heads; head k trains on bootstrap sample k and keeps its best out-of-bag epoch."""
    x_all = np.asarray(features, dtype=np.float32)
    x_flip = np.asarray(flipped, dtype=np.float32) if flipped is not None else None
    y_all = ages_to_classes(ages)
    n = len(x_all)
    torch.manual_seed(seed)  # the initial weights: without it they depend on whatever ran before (not repeatable)
    ensemble = HeadEnsemble(spec)
    curves, best_epochs, bags = [], [], []
    for k, head in enumerate(ensemble.heads):
        rng = np.random.default_rng(seed + k)
        torch.manual_seed(seed + k)
        bag = rng.integers(0, n, n) if spec.members > 1 else np.arange(n)
        oob = np.setdiff1d(np.arange(n), bag) if spec.members > 1 else np.arange(n)
        bags.append(bag)
        head.set_standardization(x_all[bag])
        optimizer = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
        x_oob = torch.from_numpy(x_all[oob])
        curve: list[float] = []
        best_state, best = None, float("inf")
        for _epoch in range(epochs):
            for rows in _batches(len(bag), BATCH_SIZE, rng):
                idx = bag[rows]
                x = x_all[idx]
                if x_flip is not None:
                    use_flip = rng.random(len(idx)) < FLIP_PROBABILITY
                    x = np.where(use_flip[:, None], x_flip[idx], x)
                train_step(head, optimizer, torch.from_numpy(x), torch.from_numpy(y_all[idx]),
                           label_sigma=spec.label_sigma)
            scheduler.step()
            head.eval()
            with torch.no_grad():
                err = float(np.mean(np.abs(expected_age(F.softmax(head(x_oob), 1)) - np.asarray(ages)[oob])))
            curve.append(err)
            if err < best:
                best, best_state = err, {key: v.clone() for key, v in head.state_dict().items()}
        if best_state is not None:
            head.load_state_dict(best_state)
        curves.append(curve)
        best_epochs.append(int(np.argmin(curve)) + 1)
        if log:
            log(f"head {k + 1}/{spec.members}: out-of-bag MAE {best:.2f} at epoch {best_epochs[-1]}")
    return HeadTrainingResult(ensemble.eval(), curves, best_epochs, bags)


def predict_probs(ensemble: HeadEnsemble, features: np.ndarray) -> np.ndarray:
    """Mean softmax of the K heads [N, 101] for cached features."""
    with torch.no_grad():
        return ensemble(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy().astype(np.float64)


def out_of_bag_probs(ensemble: HeadEnsemble, features: np.ndarray, bags: list[np.ndarray]) -> np.ndarray:
    """Per training row, the mean distribution of the heads that did *not* train on it (NaN rows: in every bag).

    Why: a calibration fitted on the heads' in-sample outputs would trust them far too much; out-of-bag outputs are
    honest predictions for the very rows the heads were trained on.
    """
    from torch.nn.functional import softmax

    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    total = np.zeros((len(x), AGE_CLASSES))
    count = np.zeros(len(x))
    with torch.no_grad():
        for head, bag in zip(ensemble.heads, bags, strict=True):
            outside = np.ones(len(x), bool)
            outside[bag] = False
            total[outside] += softmax(head(x[outside]), dim=1).numpy()
            count[outside] += 1
    with np.errstate(invalid="ignore"):
        return total / count[:, None]
