"""FaceScorer end to end on synthetic chips: one result per chip, sane fields, profiles, batch-independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from libs.common.settings import Settings
from services.scoring.models import fetch
from services.scoring.scorer import FaceScore, FaceScorer


@pytest.fixture(scope="module")
def models_dir() -> Path:
    """Converted weights (the idempotent fetch is a no-op once they exist)."""
    directory = Settings().models_dir
    fetch(directory, progress=False)  # a failing fetch is a failure: `make test` runs `howhot models fetch` first
    return directory


@pytest.fixture(scope="module")
def chips() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    return images, [CHIP_TEMPLATE.copy() for _ in images]


@pytest.fixture(scope="module")
def scorer(models_dir: Path) -> FaceScorer:
    return FaceScorer(models_dir, profile="default", device="cpu", warmup=False)


@pytest.fixture(scope="module")
def batch_scores(scorer: FaceScorer, chips: tuple) -> list[FaceScore]:
    """The 3-chip batch scored once (the WRN dominates the suite's run time on 2 cores)."""
    return scorer.score_batch(*chips)


def test_scores_have_every_field_and_are_consistent(batch_scores: list[FaceScore]) -> None:
    scores = batch_scores
    assert len(scores) == 3 and all(isinstance(s, FaceScore) for s in scores)
    for score in scores:
        d = score.to_dict()
        assert set(d) >= {"age", "age_low", "age_high", "age_std", "p_female", "gender", "members", "model_versions"}
        assert 0 <= score.age_low <= score.age <= score.age_high <= 100 and score.age_std > 0
        assert score.gender == ("female" if score.p_female > 0.5 else "male")
        assert set(score.members) == set(score.model_versions) == {
            "wrn16_8_imdbwiki", "agegender_cc0_age", "agegender_cc0_gender", "dlib_embedding_gender",
            "dex_head_arcface"}
        assert score.members["agegender_cc0_gender"]["age"] is None
        assert score.members["dex_head_arcface"]["p_female"] is None
        assert 0.0 <= score.members["dex_head_arcface"]["age"] <= 100.0
        assert score.members["dlib_embedding_gender"]["age"] is None
        assert 0.0 <= score.members["dlib_embedding_gender"]["p_female"] <= 1.0
        assert score.members["wrn16_8_imdbwiki"]["p_female"] is not None


def test_a_face_scores_the_same_alone_or_in_a_batch(
    scorer: FaceScorer, chips: tuple, batch_scores: list[FaceScore]
) -> None:
    together = batch_scores
    (alone,) = scorer.score_items([(chips[0][1], chips[1][1])])
    assert alone.age == pytest.approx(together[1].age, abs=0.1)
    assert alone.p_female == pytest.approx(together[1].p_female, abs=0.01)


def test_empty_and_mismatched_batches(scorer: FaceScorer, chips: tuple) -> None:
    assert scorer.score_batch([], []) == []
    with pytest.raises(ValueError):
        scorer.score_batch(chips[0], chips[1][:1])


def test_commercial_safe_scorer_runs_without_research_members(models_dir: Path, chips: tuple) -> None:
    safe = FaceScorer(models_dir, profile="commercial-safe", device="cpu", warmup=False)
    assert "wrn16_8_imdbwiki" not in safe.models and "dlib_embedding_gender" not in safe.models  # UTKFace-trained
    (score,) = safe.score_batch([chips[0][0]], [chips[1][0]])
    assert set(score.members) == {"agegender_cc0_age", "agegender_cc0_gender"}
