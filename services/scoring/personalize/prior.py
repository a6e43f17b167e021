"""A new rater's prior: what their factors and bias probably are before they rated anything, from demographics.

Why: a rater's sexual preference alone predicts much of their taste (it decides which faces they rate up), so a
prior mean learned from (sex, age, preference) → fitted rater vectors gives a useful personal score at zero ratings,
and shrinks the first few ratings towards the right place instead of towards the average rater. The prior
covariance is the spread of the fitted rater vectors around that mean, so the closed-form rater fit is the exact
Bayesian posterior mean under a Gaussian model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEXES = ("female", "male")  # anything else (intersex, unknown) is encoded as neither: the model sees no sex signal
PREFERENCES = ("men", "women", "either")  # 'neither' and unknown are all-zero
AGE_CENTRE, AGE_SCALE = 30.0, 10.0  # FRL raters are 17–88, median 23: one unit per decade around 30
AGE_CLIP = 4.0  # ages beyond 70 behave like 70 (few raters there)
PRIOR_RIDGE = 1.0  # ridge on the demographic → rater-vector map: few, well-populated columns
COV_JITTER = 1e-3  # keeps the prior covariance invertible when a factor has collapsed to ~0 variance


def encode_demographics(sex: str | None, age: float | None, preference: str | None) -> np.ndarray:
    """[1, one-hot sex, one-hot preference, age in decades from 30, age known] (unknowns → zeros)."""
    sex_vec = [float(sex == s) for s in SEXES]
    pref_vec = [float(preference == p) for p in PREFERENCES]
    known = age is not None and np.isfinite(age)
    age_z = float(np.clip((age - AGE_CENTRE) / AGE_SCALE, -AGE_CLIP, AGE_CLIP)) if known else 0.0
    return np.array([1.0, *sex_vec, *pref_vec, age_z, float(known)])


@dataclass
class RaterPrior:
    """Gaussian prior over a rater vector w = [p_u, b_u]: mean from demographics (or the population), precision."""

    weight: np.ndarray  # [Ddemo, K + 1]: demographics → prior mean
    precision: np.ndarray  # [K + 1, K + 1] around the demographic mean
    population_mean: np.ndarray  # [K + 1] for raters without demographics
    precision_no_demo: np.ndarray  # [K + 1, K + 1] around the population mean

    @property
    def uses_demographics(self) -> bool:
        """False for a prior fitted without demographics (then every rater gets the population prior)."""
        return self.weight.shape[0] > 1

    def mean(self, demographics: np.ndarray | None) -> np.ndarray:
        """Prior mean of a rater's vector (the population mean when demographics are unknown)."""
        if demographics is None or not self.uses_demographics:
            return self.population_mean
        return np.asarray(demographics, dtype=np.float64) @ self.weight

    def precision_for(self, demographics: np.ndarray | None) -> np.ndarray:
        """Prior precision matching ``mean``: tighter with demographics (they explain part of the spread)."""
        return self.precision_no_demo if demographics is None or not self.uses_demographics else self.precision


def _precision(residuals: np.ndarray) -> np.ndarray:
    cov = np.cov(residuals, rowvar=False) + COV_JITTER * np.eye(residuals.shape[1])
    return np.linalg.inv(cov)


def fit_rater_prior(rater_vectors: np.ndarray, demographics: np.ndarray | None = None) -> RaterPrior:
    """Fit the prior on training raters' fitted vectors [U, K + 1]; ``demographics`` [U, Ddemo] is optional."""
    w = np.asarray(rater_vectors, dtype=np.float64)
    population = w.mean(axis=0)
    precision_no_demo = _precision(w - population)
    if demographics is None:
        weight = population[None, :]
        return RaterPrior(weight, precision_no_demo, population, precision_no_demo)
    d = np.asarray(demographics, dtype=np.float64)
    penalty = PRIOR_RIDGE * np.eye(d.shape[1])
    penalty[0, 0] = 0.0  # never shrink the intercept
    weight = np.linalg.solve(d.T @ d + penalty, d.T @ w)
    return RaterPrior(weight, _precision(w - d @ weight), population, precision_no_demo)


def demographics_matrix(rows: Sequence[tuple[str | None, float | None, str | None]]) -> np.ndarray:
    """Stack ``encode_demographics`` over (sex, age, preference) rows."""
    return np.stack([encode_demographics(*row) for row in rows])
