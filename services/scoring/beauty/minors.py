"""Never rate the attractiveness of a probable minor: a pure check on the age distribution.

Why a probability and not the point estimate: an expected age of 21 can hide a wide distribution with a large mass
below 18 (age models are least accurate on teenagers), and for this decision a false "adult" is far worse than a
withheld score. The check applies to every attractiveness output, global and personal.

The distribution must be as wide as the ensemble's real errors, or a 16-year-old seen as 20 gets almost no mass
below 18: the ensemble widens it by its profile's fitted spread (``ensemble.widen``) before this check reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ADULT_AGE = 18  # legal age of majority in most jurisdictions
MINOR_PROBABILITY_THRESHOLD = 0.2  # withhold when P(age < 18) exceeds this: errs towards withholding
AGES_0_TO_100 = np.arange(101, dtype=np.float64)  # the ensemble's age distribution support (WRN's classes)


@dataclass(frozen=True)
class WithholdDecision:
    """Whether to withhold attractiveness, P(age < 18) it is based on, and a human-readable reason when withheld."""

    withhold: bool
    p_minor: float
    reason: str | None


def minor_probability(age_probs: Sequence[float], age_values: Sequence[float] | None = None) -> float:
    """P(age < 18) from a distribution over ``age_values`` (default: ages 0..100), renormalised."""
    probs = np.asarray(age_probs, dtype=np.float64)
    values = AGES_0_TO_100 if age_values is None else np.asarray(age_values, dtype=np.float64)
    if probs.shape != values.shape:
        raise ValueError(f"age distribution has {probs.shape[0]} entries, age values {values.shape[0]}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.sum() <= 0:
        raise ValueError("age distribution must be finite, non-negative and not all zero")
    return float(probs[values < ADULT_AGE].sum() / probs.sum())


def withhold_attractiveness(
    age_probs: Sequence[float],
    threshold: float = MINOR_PROBABILITY_THRESHOLD,
    age_values: Sequence[float] | None = None,
) -> WithholdDecision:
    """Withhold every attractiveness output (global or personal) when P(age < 18) > ``threshold``.

    An invalid distribution withholds too (fail closed): no score is safer than a score for an unknown age.
    """
    try:
        p_minor = minor_probability(age_probs, age_values)
    except ValueError as error:
        return WithholdDecision(True, float("nan"), f"age distribution unusable ({error}); withheld to be safe")
    if p_minor > threshold:
        return WithholdDecision(
            True, p_minor, f"P(age < {ADULT_AGE}) = {p_minor:.2f} exceeds {threshold:.2f}: attractiveness is not "
            "rated for people who may be minors",
        )
    return WithholdDecision(False, p_minor, None)
