"""Six-word mapping and the minors check (pure functions, no data)."""

import numpy as np
import pytest

from services.scoring.beauty.minors import MINOR_PROBABILITY_THRESHOLD, minor_probability, withhold_attractiveness
from services.scoring.beauty.words import (
    GODLIKE_FROM,
    HOT_FROM,
    NICE_FROM,
    OK_FROM,
    STUNNING_FROM,
    WORDS,
    score_word,
)


@pytest.mark.parametrize(
    ("score", "word"),
    [(1.0, "Hmm"), (OK_FROM - 0.01, "Hmm"), (OK_FROM, "OK"), (NICE_FROM, "Nice"), (6.0, "Nice"), (HOT_FROM, "Hot"),
     (STUNNING_FROM, "Stunning"), (GODLIKE_FROM, "Godlike"), (10.0, "Godlike"), (float("nan"), "Hmm")],
)
def test_score_word(score: float, word: str) -> None:
    assert score_word(score) == word


def test_words_are_monotonic() -> None:
    grid = np.linspace(1, 10, 181)
    ranks = [WORDS.index(score_word(s)) for s in grid]
    assert ranks == sorted(ranks) and set(ranks) == set(range(6))


def _peaked(age: float, width: float = 3.0) -> np.ndarray:
    ages = np.arange(101)
    p = np.exp(-0.5 * ((ages - age) / width) ** 2)
    return p / p.sum()


def test_adult_is_not_withheld() -> None:
    decision = withhold_attractiveness(_peaked(30))
    assert not decision.withhold and decision.reason is None and decision.p_minor < 1e-3


def test_teen_is_withheld_with_reason() -> None:
    decision = withhold_attractiveness(_peaked(16))
    assert decision.withhold and decision.p_minor > 0.5 and "18" in decision.reason


def test_threshold_is_configurable_and_strict() -> None:
    p = np.zeros(101)
    p[17], p[30] = 0.2, 0.8  # exactly at the default threshold: not above it
    assert minor_probability(p) == pytest.approx(0.2)
    assert not withhold_attractiveness(p).withhold
    assert withhold_attractiveness(p, threshold=0.1).withhold
    assert MINOR_PROBABILITY_THRESHOLD == 0.2


def test_other_age_supports_and_bad_input_fail_closed() -> None:
    values = np.array([0.25, *range(1, 81)])
    p = np.zeros(81)
    p[10] = 1.0  # age 10 on the CC0 member's support
    assert withhold_attractiveness(p, age_values=values).withhold
    assert withhold_attractiveness(np.zeros(101)).withhold
    assert withhold_attractiveness(np.ones(50)).withhold  # wrong length: withheld, not crashed


def test_no_blur_is_the_plain_mass_below_18() -> None:
    p = _peaked(19, width=2.0)
    assert minor_probability(p, blur_sd=0.0) == pytest.approx(float(p[:18].sum()))


def test_blur_widens_a_too_sure_distribution_near_18() -> None:
    sure_twenty = _peaked(20, width=0.5)  # a profile that is far more certain than its errors allow
    assert minor_probability(sure_twenty) < 0.001
    blurred = minor_probability(sure_twenty, blur_sd=4.5)
    assert 0.25 < blurred < 0.4  # P(20 + e < 18), e ~ N(0, 4.5²) ≈ 0.33
    assert minor_probability(sure_twenty, blur_sd=8.0) > blurred
    assert minor_probability(_peaked(60, width=0.5), blur_sd=4.5) < 1e-6  # far from 18: nothing changes


def test_blur_keeps_a_child_a_child() -> None:
    baby = np.zeros(101)
    baby[0] = 1.0  # mass blurred below age 0 is not lost (that would lower P): only the > 18 tail leaves
    assert minor_probability(baby, blur_sd=6.0) == pytest.approx(0.9973, abs=1e-4)  # P(|e| < 3 sd | e ≥ 0)


@pytest.mark.parametrize("blur", [-1.0, float("nan"), float("inf")])
def test_an_invalid_blur_fails_closed(blur: float) -> None:
    with pytest.raises(ValueError, match="blur_sd"):
        minor_probability(_peaked(30), blur_sd=blur)
    assert withhold_attractiveness(_peaked(30), blur_sd=blur).withhold
