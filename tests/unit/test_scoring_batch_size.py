"""The scoring service's micro-batch size: the operator's value, or one that suits the device the models run on."""

from __future__ import annotations

import pytest

from libs.common.settings import ModelSettings, ScoringSettings, Settings
from services.scoring.app import CPU_MAX_BATCH, CUDA_MAX_BATCH, max_batch


def _settings(batch: int | None = None, device: str = "cpu") -> Settings:
    scoring = ScoringSettings() if batch is None else ScoringSettings(max_batch=batch)
    return Settings(scoring=scoring, models=ModelSettings(device=device))


def test_auto_is_the_default_and_picks_the_cpu_size_on_the_cpu() -> None:
    assert ScoringSettings().max_batch == 0
    assert max_batch(_settings(device="cpu")) == CPU_MAX_BATCH


def test_auto_picks_the_large_size_for_a_cuda_device() -> None:
    assert max_batch(_settings(device="cuda")) == CUDA_MAX_BATCH
    assert CUDA_MAX_BATCH > CPU_MAX_BATCH


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_an_explicit_size_wins_on_any_device(device: str) -> None:
    assert max_batch(_settings(batch=32, device=device)) == 32


def test_a_negative_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOWHOT_SCORING_MAX_BATCH", "-1")
    with pytest.raises(ValueError, match="HOWHOT_SCORING_MAX_BATCH"):  # named as the operator set it
        ScoringSettings()
