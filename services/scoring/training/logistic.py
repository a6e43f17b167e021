"""L2-regularised logistic regression in float64 (LBFGS): the gender heads on frozen embeddings are fitted with it."""

from __future__ import annotations

import numpy as np
import torch


def logistic_fit(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 200) -> tuple[np.ndarray, float]:
    """Weights and bias minimising mean log loss + ``l2``/2·|w|² (features are expected standardised)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w @ w) / 2
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())
