"""Never rate the attractiveness of a probable minor: a pure check on the age distribution.

Why a probability and not the point estimate: an expected age of 21 can hide a wide distribution with a large mass
below 18 (age models are least accurate on teenagers), and for this decision a false "adult" is far worse than a
withheld score. The check applies to every attractiveness output, global and personal.

Why a blur: a profile whose distributions are narrower than its real errors (the CC0-only ensemble) puts almost no
mass below 18 for a 16-year-old it sees as 20. Each profile's calibration carries a Gaussian blur (years, fitted on
the calibration data so that P(age < 18) is a probability there: ``benchmarks/minors_fit_blur.py``) that widens the
distribution for this check only; the reported age and range are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

ADULT_AGE = 18  # legal age of majority in most jurisdictions
MINOR_PROBABILITY_THRESHOLD = 0.2  # withhold when P(age < 18) exceeds this: errs towards withholding
AGES_0_TO_100 = np.arange(101, dtype=np.float64)  # the ensemble's age distribution support (WRN's classes)


@dataclass(frozen=True)
class WithholdDecision:
    """Whether to withhold attractiveness, P(age < 18) it is based on, and a human-readable reason when withheld."""

    withhold: bool
    p_minor: float
    reason: str | None


def minor_probability(
    age_probs: Sequence[float], age_values: Sequence[float] | None = None, blur_sd: float = 0.0,
) -> float:
    """P(age < 18) from a distribution over ``age_values`` (default: ages 0..100), renormalised; with ``blur_sd``
    each age's mass is first spread as a Gaussian of that many years (cut at 0, so no mass goes below birth)."""
    probs = np.asarray(age_probs, dtype=np.float64)
    values = AGES_0_TO_100 if age_values is None else np.asarray(age_values, dtype=np.float64)
    if probs.shape != values.shape:
        raise ValueError(f"age distribution has {probs.shape[0]} entries, age values {values.shape[0]}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.sum() <= 0:
        raise ValueError("age distribution must be finite, non-negative and not all zero")
    if not np.isfinite(blur_sd) or blur_sd < 0:
        raise ValueError(f"blur_sd must be a finite number of years >= 0, got {blur_sd}")
    if blur_sd == 0:
        return float(probs[values < ADULT_AGE].sum() / probs.sum())
    # P(age + e < 18) for e ~ N(0, sd²), truncated at age 0: the normal CDF between −age and 18 − age over ≥ −age
    below = _normal_cdf((ADULT_AGE - values) / blur_sd) - _normal_cdf(-values / blur_sd)
    kept = 1.0 - _normal_cdf(-values / blur_sd)
    return float(np.sum(probs * below / kept) / probs.sum())


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return np.asarray(ndtr(z), dtype=np.float64)


def withhold_attractiveness(
    age_probs: Sequence[float],
    threshold: float = MINOR_PROBABILITY_THRESHOLD,
    age_values: Sequence[float] | None = None,
    blur_sd: float = 0.0,
) -> WithholdDecision:
    """Withhold every attractiveness output (global or personal) when P(age < 18) > ``threshold``.

    An invalid distribution withholds too (fail closed): no score is safer than a score for an unknown age.
    """
    try:
        p_minor = minor_probability(age_probs, age_values, blur_sd)
    except ValueError as error:
        return WithholdDecision(True, float("nan"), f"age distribution unusable ({error}); withheld to be safe")
    if p_minor > threshold:
        return WithholdDecision(
            True, p_minor, f"P(age < {ADULT_AGE}) = {p_minor:.2f} exceeds {threshold:.2f}: attractiveness is not "
            "rated for people who may be minors",
        )
    return WithholdDecision(False, p_minor, None)
