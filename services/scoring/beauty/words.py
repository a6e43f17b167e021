"""Howhot's six words for a 1–10 attractiveness score.

Thresholds are lower bounds on the score, set from MEBeauty's distribution of mean scores (median 6.2, sd 1.3) so
each word means roughly the same share of faces: "Hmm" ≈ the lowest 13 %, "OK" ≈ 25 %, "Nice" ≈ 27 %, "Hot" ≈ 25 %,
"Stunning" ≈ the top 8 %, "Godlike" ≈ the top 2 %. Heads shrink towards the mean, so predicted scores reach the top
words even more rarely than rated ones: the top words stay special.
"""

from __future__ import annotations

WORD_HMM = "Hmm"
WORD_OK = "OK"
WORD_NICE = "Nice"
WORD_HOT = "Hot"
WORD_STUNNING = "Stunning"
WORD_GODLIKE = "Godlike"

OK_FROM = 4.5  # ≈ 13th percentile of MEBeauty mean scores
NICE_FROM = 5.75  # ≈ 38th percentile
HOT_FROM = 6.75  # ≈ 65th percentile
STUNNING_FROM = 7.75  # ≈ 90th percentile
GODLIKE_FROM = 8.5  # ≈ 98th percentile

WORD_THRESHOLDS: tuple[tuple[float, str], ...] = (
    (GODLIKE_FROM, WORD_GODLIKE),
    (STUNNING_FROM, WORD_STUNNING),
    (HOT_FROM, WORD_HOT),
    (NICE_FROM, WORD_NICE),
    (OK_FROM, WORD_OK),
)
WORDS = (WORD_HMM, WORD_OK, WORD_NICE, WORD_HOT, WORD_STUNNING, WORD_GODLIKE)  # ascending


def score_word(score: float) -> str:
    """The word for a 1–10 score: the highest word whose lower bound the score reaches (NaN → "Hmm")."""
    for lower_bound, word in WORD_THRESHOLDS:
        if score >= lower_bound:
            return word
    return WORD_HMM
