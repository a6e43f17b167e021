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
