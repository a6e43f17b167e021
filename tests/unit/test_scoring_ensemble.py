"""Ensemble math: grid alignment, affine push-forward, expectation/spread/quantiles, weights, profiles, TTA, fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.scoring import ensemble as ens
from services.scoring.members import MemberOutput
from services.scoring.models.registry import CC0_AGE_VALUES, PRETRAINED_CONFIGS

WRN_VALUES = np.arange(101.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _peaked(values: np.ndarray, centres: np.ndarray, width: float = 3.0) -> np.ndarray:
    return _softmax(-((values[None, :] - np.asarray(centres)[:, None]) ** 2) / (2 * width**2))


def _outputs(wrn_age: np.ndarray, cc0_age: np.ndarray, pf: np.ndarray | None = None) -> dict[str, MemberOutput]:
    n = len(wrn_age)
    pf = np.full(n, 0.5) if pf is None else pf
    return {
        "wrn16_8_imdbwiki": MemberOutput("wrn16_8_imdbwiki", "1", WRN_VALUES, _peaked(WRN_VALUES, wrn_age), pf),
        "agegender_cc0_age": MemberOutput("agegender_cc0_age", "1", np.asarray(CC0_AGE_VALUES),
                                          _peaked(np.asarray(CC0_AGE_VALUES), cc0_age), None),
        "agegender_cc0_gender": MemberOutput("agegender_cc0_gender", "1", None, None, 1 - pf),
    }


def test_aligning_81_classes_onto_0_100_keeps_mass_and_expectation() -> None:
    probs = _softmax(np.random.default_rng(0).normal(size=(4, 81)))
    grid = ens.align_to_grid(probs, CC0_AGE_VALUES)
    assert grid.shape == (4, 101)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert np.all(grid[:, 81:] == 0)
    np.testing.assert_allclose(ens.expectation(grid), probs @ np.asarray(CC0_AGE_VALUES), atol=1e-12)
    # class 0 (0.25 years) splits 3:1 between ages 0 and 1
    one_hot = np.zeros((1, 81))
    one_hot[0, 0] = 1.0
    np.testing.assert_allclose(ens.align_to_grid(one_hot, CC0_AGE_VALUES)[0, :2], [0.75, 0.25])


def test_pushforward_is_an_exact_affine_map_of_the_expectation() -> None:
    grid = _peaked(WRN_VALUES, np.array([30.0, 50.0]))
    moved = ens.pushforward(grid, offset=-5.0, scale=1.3)
    np.testing.assert_allclose(ens.expectation(moved), -5.0 + 1.3 * ens.expectation(grid), atol=1e-9)
    np.testing.assert_allclose(ens.spread(moved), 1.3 * ens.spread(grid), rtol=0.02)


def test_expectation_spread_and_central_interval() -> None:
    grid = _peaked(WRN_VALUES, np.array([40.0]), width=5.0)
    assert ens.expectation(grid)[0] == pytest.approx(40.0, abs=1e-6)
    assert ens.spread(grid)[0] == pytest.approx(5.0, rel=0.01)
    low, high = ens.quantile(grid, 0.1)[0], ens.quantile(grid, 0.9)[0]
    assert low == pytest.approx(40 - 1.2816 * 5, abs=0.3) and high == pytest.approx(40 + 1.2816 * 5, abs=0.3)


def test_weights_pick_between_members() -> None:
    out = _outputs(np.array([20.0]), np.array([60.0]))
    cal = ens.EnsembleCalibration.uncalibrated("default")
    cal.global_age_weights = cal.age_weights[0] = {"wrn16_8_imdbwiki": 1.0, "agegender_cc0_age": 0.0}
    assert ens.combine(out, cal).age[0] == pytest.approx(20.0, abs=0.1)
    cal.global_age_weights = cal.age_weights[0] = {"wrn16_8_imdbwiki": 0.25, "agegender_cc0_age": 0.75}
    assert ens.combine(out, cal).age[0] == pytest.approx(0.25 * 20 + 0.75 * 60, abs=0.1)
    result = ens.combine(out, cal)
    assert result.age_low[0] < 25 and result.age_high[0] > 55  # disagreement widens the range
    assert result.member_age["wrn16_8_imdbwiki"][0] == pytest.approx(20.0, abs=0.1)


def test_gender_is_the_weighted_mean_of_p_female() -> None:
    out = _outputs(np.array([30.0]), np.array([30.0]), pf=np.array([0.9]))  # WRN 0.9, CC0 0.1
    cal = ens.EnsembleCalibration.uncalibrated("default")
    cal.gender_weights = {"wrn16_8_imdbwiki": 0.25, "agegender_cc0_gender": 0.75}
    assert ens.combine(out, cal).p_female[0] == pytest.approx(0.25 * 0.9 + 0.75 * 0.1)


def test_commercial_safe_profile_excludes_research_only_members() -> None:
    safe = ens.profile_members("commercial-safe")
    assert "wrn16_8_imdbwiki" not in safe
    assert all(PRETRAINED_CONFIGS[n].commercial_use for n in safe)
    assert set(ens.profile_members("default")) == set(PRETRAINED_CONFIGS)
    cal = ens.load_calibration("commercial-safe")
    assert "wrn16_8_imdbwiki" not in cal.members
    with pytest.raises(ValueError):
        ens.profile_members("everything")


def test_flip_tta_is_symmetric() -> None:
    """Averaging original and mirror outputs gives the same answer whichever of the two is called 'original'."""
    rng = np.random.default_rng(1)
    a, b = _softmax(rng.normal(size=(3, 101))), _softmax(rng.normal(size=(3, 101)))
    pa, pb = rng.uniform(size=3), rng.uniform(size=3)
    cal = ens.EnsembleCalibration.uncalibrated("default")

    def merged(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> ens.EnsembleOutput:
        wrn = MemberOutput("wrn16_8_imdbwiki", "1", WRN_VALUES, (x + y) / 2, (px + py) / 2)
        cc0 = MemberOutput("agegender_cc0_age", "1", np.asarray(CC0_AGE_VALUES), (x + y)[:, :81] / 2, None)
        gen = MemberOutput("agegender_cc0_gender", "1", None, None, (px + py) / 2)
        return ens.combine({"wrn16_8_imdbwiki": wrn, "agegender_cc0_age": cc0, "agegender_cc0_gender": gen}, cal)

    one, two = merged(a, b, pa, pb), merged(b, a, pb, pa)
    np.testing.assert_allclose(one.age, two.age)
    np.testing.assert_allclose(one.p_female, two.p_female)


def test_flip_in_member_runner_averages_a_crop_and_its_mirror() -> None:
    import torch

    from services.scoring.members import run_member
    from services.scoring.models.registry import pretrained_config

    cfg = pretrained_config("agegender_cc0_gender")
    model = cfg.constructor().eval()
    crops = np.random.default_rng(2).integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    one = run_member(cfg, model, crops, flip=True).p_female
    two = run_member(cfg, model, np.ascontiguousarray(crops[:, :, ::-1]), flip=True).p_female
    np.testing.assert_allclose(one, two, atol=1e-6)


def test_fit_recovers_a_biased_member_and_beats_every_member() -> None:
    rng = np.random.default_rng(3)
    ages = rng.uniform(1, 80, size=600)
    wrn_age = 25 + 0.4 * ages + rng.normal(0, 4, size=ages.size)  # collapsed towards the middle
    cc0_age = np.clip(ages + rng.normal(0, 5, size=ages.size), 0, 80)
    pf_true = (rng.uniform(size=ages.size) > 0.5).astype(float)
    pf = np.clip(pf_true * 0.8 + 0.1 + rng.normal(0, 0.05, ages.size), 0.01, 0.99)
    out = _outputs(wrn_age, cc0_age, pf)
    cal = ens.fit_ensemble(out, ages, pf_true, profile="default")
    offset, scale = cal.age_affine["wrn16_8_imdbwiki"]
    # the regression of true age on a noisy collapsed estimate: slope ≈ 0.4·var(age) / (0.16·var(age) + 4²) ≈ 2.1
    assert scale == pytest.approx(2.1, rel=0.15)
    assert offset + scale * (25 + 0.4 * ages.mean()) == pytest.approx(ages.mean(), abs=3)  # unbiased on average
    for weights in [cal.global_age_weights, *cal.age_weights]:
        assert min(weights.values()) >= 0 and sum(weights.values()) == pytest.approx(1.0)
    result = ens.combine(out, cal)
    ensemble_mae = np.mean(np.abs(result.age - ages))
    assert ensemble_mae < min(np.mean(np.abs(m - ages)) for m in result.member_age.values())
    assert set(cal.gender_weights) == {"wrn16_8_imdbwiki", "agegender_cc0_gender"}
    restored = ens.EnsembleCalibration.from_dict(__import__("json").loads(cal.to_json()))
    np.testing.assert_allclose(ens.combine(out, restored).age, result.age)


def test_fit_for_commercial_safe_ignores_research_members() -> None:
    ages = np.linspace(1, 80, 100)
    out = _outputs(ages, ages)
    cal = ens.fit_ensemble(out, ages, profile="commercial-safe")
    assert cal.members == ["agegender_cc0_age", "agegender_cc0_gender"]


def test_spread_is_kept_by_the_file_and_commercial_safe_needs_more(tmp_path) -> None:
    cal, default = ens.load_calibration("commercial-safe"), ens.load_calibration("default")
    ages = np.array([5.0, 30.0, 70.0])
    cc0 = ens.spread_years(cal.spread_sd, cal.spread_per_year, ages)
    assert np.all(cc0 > ens.spread_years(default.spread_sd, default.spread_per_year, ages))  # CC0 is too sure
    assert cc0[2] > cc0[0]  # benchmarks/age_fit_spread.py: its errors grow with age
    cal.save(tmp_path / "commercial-safe.json")
    loaded = ens.load_calibration("commercial-safe", tmp_path)
    assert (loaded.spread_sd, loaded.spread_per_year) == (cal.spread_sd, cal.spread_per_year)
    data = json.loads((tmp_path / "commercial-safe.json").read_text())
    del data["spread_sd"], data["spread_per_year"]  # a calibration written before the fields existed: no widening
    old = ens.EnsembleCalibration.from_dict(data)
    assert (old.spread_sd, old.spread_per_year) == (0.0, 0.0)


def test_widening_adds_variance_keeps_mass_and_mean_away_from_the_ends() -> None:
    probs = _peaked(WRN_VALUES, np.array([30.0, 60.0]), width=2.0)
    wide = ens.widen(probs, 4.0)
    np.testing.assert_allclose(wide.sum(axis=1), 1.0)
    np.testing.assert_allclose(ens.expectation(wide), ens.expectation(probs), atol=1e-6)
    np.testing.assert_allclose(ens.spread(wide) ** 2, ens.spread(probs) ** 2 + 4.0**2, rtol=0.02)
    assert ens.widen(probs, 0.0) is probs


def test_widening_a_baby_keeps_the_mass_on_the_grid() -> None:
    baby = np.zeros((1, 101))
    baby[0, 0] = 1.0
    wide = ens.widen(baby, 6.0)
    assert wide.sum() == pytest.approx(1.0) and wide[0, :18].sum() > 0.99  # nothing lost below 0: still a minor


def test_a_spread_per_row_widens_each_row_by_its_own() -> None:
    probs = _peaked(WRN_VALUES, np.array([10.0, 40.0, 70.0]), width=2.0)
    sds = np.array([0.0, 3.0, 7.0])
    wide = ens.widen(probs, sds)
    for i, sd in enumerate(sds):
        np.testing.assert_allclose(wide[i], ens.widen(probs[i:i + 1], float(sd))[0], atol=1e-12)
    assert ens.spread(wide)[2] > ens.spread(wide)[1] > ens.spread(wide)[0]


@pytest.mark.parametrize("sd", [-1.0, float("nan"), float("inf")])
def test_an_invalid_spread_is_refused(sd: float) -> None:
    with pytest.raises(ValueError, match="spread must be"):
        ens.widen(np.full((1, 101), 1 / 101), sd)
    with pytest.raises(ValueError, match="spread must be"):
        ens.widen(np.full((2, 101), 1 / 101), np.array([1.0, sd]))


def test_combine_reports_the_unwidened_age_and_the_widened_range() -> None:
    ages = np.array([25.0, 50.0])
    out = _outputs(ages, ages)
    cal = ens.EnsembleCalibration.uncalibrated()
    sharp = ens.combine(out, cal)
    cal.spread_sd, cal.spread_per_year = 2.0, 0.1  # 4.5 years at 25, 7 at 50
    wide = ens.combine(out, cal)
    np.testing.assert_allclose(wide.age, sharp.age)
    assert np.all(wide.age_std > sharp.age_std)
    assert np.all(wide.age_low < sharp.age_low) and np.all(wide.age_high > sharp.age_high)
    assert np.all((wide.age_low <= wide.age) & (wide.age <= wide.age_high))
    gained = ens.spread(wide.age_probs) ** 2 - ens.spread(sharp.age_probs) ** 2
    np.testing.assert_allclose(gained, [4.5**2, 7.0**2], rtol=0.05)  # the older face is widened more


def test_the_range_always_holds_the_age_even_when_members_disagree_wildly() -> None:
    """WRN says 95, CC0 says 2, CC0 weighs 0.92: the expectation (~10) lies above the 90 % quantile (~8)."""
    out = _outputs(np.array([95.0]), np.array([2.0]))
    cal = ens.EnsembleCalibration.uncalibrated()
    cal.global_age_weights = cal.age_weights[0] = {"wrn16_8_imdbwiki": 0.08, "agegender_cc0_age": 0.92}
    result = ens.combine(out, cal)
    assert ens.quantile(result.age_probs, 0.9)[0] < result.age[0]  # the situation this guards against
    assert result.age_low[0] <= result.age[0] <= result.age_high[0]
    assert result.age_high[0] == pytest.approx(result.age[0])
