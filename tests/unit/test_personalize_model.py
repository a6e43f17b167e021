"""Personalisation logic on synthetic data: MF recovery, closed-form rater fit, fallback, state, picker, store."""

import asyncio

import numpy as np
import pytest

from services.scoring.personalize.mf import fit_biased_mf, masked_rmse
from services.scoring.personalize.model import fit_display_map, fit_personal_model
from services.scoring.personalize.picker import pick_informative
from services.scoring.personalize.prior import encode_demographics, fit_rater_prior
from services.scoring.personalize.rater import RaterState, fit_rater_closed_form
from services.scoring.personalize.store import InMemoryRaterStateStore


def _planted(n_raters: int = 300, n_items: int = 80, rank: int = 3, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=(n_raters, rank)), rng.normal(size=(n_items, rank))
    bu, bi = rng.normal(0, 0.5, n_raters), rng.normal(0, 0.5, n_items)
    clean = 4.0 + bu[:, None] + bi[None, :] + p @ q.T
    return clean, clean + rng.normal(0, noise, clean.shape), q, bi


def test_mf_recovers_planted_low_rank_structure() -> None:
    clean, noisy, _, _ = _planted()
    mask = (np.random.default_rng(1).random(noisy.shape) < 0.5).astype(float)
    model = fit_biased_mf(noisy, mask, rank=3, reg=0.1)
    assert masked_rmse(model, noisy, mask) < 0.12
    held_out = 1 - mask
    assert masked_rmse(model, clean, held_out) < 0.1  # unseen cells: the structure, not the noise, was learned
    assert masked_rmse(model, noisy, held_out) < 0.2 < float(np.std(noisy))


def test_closed_form_rater_fit_matches_least_squares() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=12)
    lam, noise = 2.0, 0.5
    prior_mean = rng.normal(size=4)
    w = fit_rater_closed_form(x, y, prior_mean, lam * np.eye(4), noise)
    # same problem as an augmented ordinary least squares: [X/σ; √λ I] w ≈ [y/σ; √λ m0]
    a = np.vstack([x / np.sqrt(noise), np.sqrt(lam) * np.eye(4)])
    b = np.concatenate([y / np.sqrt(noise), np.sqrt(lam) * prior_mean])
    np.testing.assert_allclose(w, np.linalg.lstsq(a, b, rcond=None)[0], atol=1e-10)
    # and the online state reaches the same answer one rating at a time
    state = RaterState.new("r1", "v", 4)
    for i in range(12):
        state = state.with_rating(f"f{i}", x[i], 0.0, y[i])
    np.testing.assert_allclose(state.weights(prior_mean, lam * np.eye(4), noise), w, atol=1e-10)


def test_zero_ratings_give_the_prior() -> None:
    m0 = np.array([0.3, -0.2, 1.0])
    np.testing.assert_allclose(fit_rater_closed_form(np.zeros((0, 3)), np.zeros(0), m0, np.eye(3), 1.0), m0)


@pytest.fixture(scope="module")
def personal():
    _, noisy, q, bi = _planted(n_raters=200, n_items=60, rank=2, noise=0.2, seed=4)
    features = np.hstack([q, bi[:, None]]) + np.random.default_rng(5).normal(0, 0.05, (60, 3))
    model, _ = fit_personal_model(noisy, features, scale=(1.0, 7.0), rank=2, reg=1.0, name="synthetic")
    return model, features, noisy


def test_fallback_to_global_score_before_min_ratings(personal) -> None:
    model, features, _ = personal
    state = model.new_state("visitor-1")
    for i in range(model.min_ratings - 1):
        state = model.add_rating(state, f"face-{i}", features[i], 7.0, scale="1to10")
        result = model.personal_score(state, features[10], global_score=6.4)
        assert result.source == "global" and result.score == 6.4
    state = model.add_rating(state, "face-last", features[model.min_ratings], 7.0, scale="1to10")
    result = model.personal_score(state, features[10], global_score=6.4)
    assert result.source == "personal" and 1.0 <= result.score <= 10.0 and result.n_ratings == model.min_ratings


def test_demographics_give_a_prior_score_at_zero_ratings(personal) -> None:
    model, features, noisy = personal
    state = model.new_state("visitor-2", demographics={"sex": "female", "age": 25, "preference": "men"})
    assert model.personal_score(state, features[0], global_score=5.0).source == "global"  # model has no demo prior
    demo = np.stack([encode_demographics("female", 25.0, "men")] * len(noisy))
    with_demo, _ = fit_personal_model(noisy, features, scale=(1.0, 7.0), demographics=demo, rank=2, reg=1.0)
    state = with_demo.new_state("visitor-2", demographics={"sex": "female", "age": 25, "preference": "men"})
    assert with_demo.personal_score(state, features[0], global_score=5.0).source == "demographic_prior"


def test_personal_model_learns_the_rater(personal) -> None:
    model, features, noisy = personal
    rater = noisy[7]
    state = model.new_state("r7")
    for i in range(30):
        state = model.add_rating(state, f"f{i}", features[i], rater[i] * 10 / 7, scale="1to10")  # 1–10 input
    pred = model.predict_ratings(state, features[30:])
    assert np.corrcoef(pred, rater[30:])[0, 1] > 0.8


def test_state_round_trips_through_bytes(personal) -> None:
    model, features, _ = personal
    state = model.new_state("visitor-3", demographics={"sex": "male", "age": None, "preference": "women"})
    state = model.add_rating(state, "photo-1#0", features[0], 1.0, scale="hot_or_not")
    data = state.to_bytes()
    assert isinstance(data, bytes) and b"visitor-3" in data
    back = RaterState.from_bytes(data)
    assert back.model_version == model.version and back.history == state.history
    np.testing.assert_allclose(model.rater_weights(back), model.rater_weights(state))
    store = InMemoryRaterStateStore()
    asyncio.run(store.save(back))
    again = asyncio.run(store.load("visitor-3"))
    assert again is not None and again.to_bytes() == data
    assert asyncio.run(store.load("nobody")) is None


def test_model_save_load(personal, tmp_path) -> None:
    model, features, _ = personal
    model.save(tmp_path / "m.npz")
    from services.scoring.personalize.model import PersonalModel

    loaded = PersonalModel.load(tmp_path / "m.npz")
    state = model.new_state("x")
    np.testing.assert_allclose(loaded.predict_ratings(state, features), model.predict_ratings(state, features),
                               atol=1e-4)


def test_picker_prefers_uncertain_and_diverse_faces() -> None:
    vectors = np.array([[0.0, 1.0], [0.01, 1.0], [3.0, 1.0], [3.01, 1.0], [-3.0, 1.0]])
    picks = pick_informative(np.eye(2), vectors, 2, noise_var=0.1)
    assert picks[0] in (2, 3, 4) and picks[1] in (2, 3, 4) and {picks[0], picks[1]} != {2, 3}
    assert pick_informative(np.eye(2), vectors, 5, 0.1, exclude=np.array([1, 1, 1, 1, 0], bool)) == [4]


def test_demographic_prior_learns_preference_offsets() -> None:
    rng = np.random.default_rng(6)
    prefs = rng.choice(["men", "women"], 400)
    demo = np.stack([encode_demographics("female", 25.0, p) for p in prefs])
    vectors = np.where((prefs == "women")[:, None], [1.0, 0.0], [-1.0, 0.0]) + rng.normal(0, 0.1, (400, 2))
    prior = fit_rater_prior(vectors, demo)
    assert prior.mean(encode_demographics("female", 25.0, "women"))[0] == pytest.approx(1.0, abs=0.1)
    assert prior.mean(encode_demographics("male", 40.0, "men"))[0] < -0.5
    assert np.linalg.det(prior.precision) > np.linalg.det(prior.precision_no_demo)  # demographics explain spread


def test_committed_personal_model_loads_and_personalises() -> None:
    from services.scoring.beauty.scorer import WEIGHTS_DIR
    from services.scoring.personalize.model import PersonalModel

    model = PersonalModel.load(WEIGHTS_DIR / "personal_frl_london.npz")
    assert model.prior.uses_demographics and model.global_score_weight > 0 and model.blocks
    face = model.item_map.mean.copy()  # the average training face
    state = model.new_state("v1", demographics={"sex": "female", "age": 23.0, "preference": "men"})
    prior_score = model.personal_score(state, face, global_score=6.0)
    assert prior_score.source == "demographic_prior" and 1.0 <= prior_score.score <= 10.0
    for i in range(model.min_ratings):
        state = model.add_rating(state, f"p{i}#0", face, 1.0, scale="hot_or_not")
    liked = model.personal_score(RaterState.from_bytes(state.to_bytes()), face, global_score=6.0)
    assert liked.source == "personal" and liked.score > prior_score.score  # rated "hot" five times → scores higher
    assert len(model.pick_faces(state, np.stack([face, face * 1.1, face * 0.9]), 2)) == 2


def test_display_map_puts_the_raters_scale_on_the_global_scores_scale(tmp_path) -> None:
    """An average face reads like an average global score, and a 1–10 rating maps back to the rating it shows."""
    _, noisy, _, _ = _planted(n_raters=60, n_items=40, seed=5)
    features = np.random.default_rng(6).normal(size=(40, 4))
    model, _ = fit_personal_model(np.clip(noisy, 1.0, 7.0), features, (1.0, 7.0), rank=2, reg=1.0)
    face_means = np.clip(noisy, 1.0, 7.0).mean(axis=0)
    global_scores = 7.0 + 1.3 * (face_means - face_means.mean()) / face_means.std()
    stretched = float(model.to_display(face_means.mean()))  # the old map: 1–7 stretched onto 1–10
    model.display_slope, model.display_offset = fit_display_map(face_means, global_scores)
    np.testing.assert_allclose(model.to_display(face_means), global_scores, atol=1e-9)
    assert abs(stretched - 7.0) > 1.0  # what the fitted map corrects
    for shown in (3.0, 6.0, 8.5):
        assert model.to_display(model.to_model_scale("1to10", shown)) == pytest.approx(shown)
    assert model.to_model_scale("1to10", 10.0) <= model.scale_max and model.to_model_scale("1to10", 1.0) >= 1.0
    model.save(tmp_path / "m.npz")
    loaded = type(model).load(tmp_path / "m.npz")
    assert (loaded.display_slope, loaded.display_offset) == pytest.approx((model.display_slope, model.display_offset))
