"""Heads: ridge solver, save/load, and the committed weights load and score a feature vector."""

from pathlib import Path

import numpy as np
import pytest

from libs.common.modelcard import ModelCard
from services.scoring.beauty.head import BeautyHead, Standardizer, dex_predict, fit_dex, ridge_path, soft_labels
from services.scoring.beauty.scorer import CC0_HEAD, DEFAULT_HEAD, WEIGHTS_DIR, load_beauty_head, score_vector
from services.scoring.beauty.words import WORDS


def test_ridge_path_matches_normal_equations() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=50)
    (w, b), = ridge_path(x, y, [2.0])
    xc, yc = x - x.mean(0), y - y.mean()
    expected = np.linalg.solve(xc.T @ xc + 2.0 * np.eye(8), xc.T @ yc)
    np.testing.assert_allclose(w, expected, atol=1e-10)
    assert b == pytest.approx(y.mean() - x.mean(0) @ w)


def test_dex_head_learns_a_linear_score() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5))
    y = np.clip(5.5 + 1.5 * x[:, 0], 1, 10)
    w, b = fit_dex(x, soft_labels(y, 0.75), weight_decay=1e-4, epochs=300)
    mean, std = dex_predict(x, w, b)
    assert np.corrcoef(mean, y)[0, 1] > 0.95 and np.all(std > 0)


def test_head_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 4))
    head = BeautyHead("blend", ["a.x"], Standardizer.fit(x), rng.normal(size=4), 6.0, rng.normal(size=(4, 19)),
                      rng.normal(size=19), 0.8, {"k": 1})
    head.save(tmp_path / "h.npz")
    loaded = BeautyHead.load(tmp_path / "h.npz")
    np.testing.assert_allclose(loaded.predict(x)[0], head.predict(x)[0], atol=1e-4)
    assert loaded.blocks == ["a.x"] and loaded.meta == {"k": 1}


@pytest.mark.parametrize("name", [DEFAULT_HEAD, CC0_HEAD])
def test_committed_head_loads_and_scores(name: str) -> None:
    head, card = load_beauty_head(name)
    assert isinstance(card, ModelCard) and card.task == "attractiveness" and not card.commercial_use
    assert (WEIGHTS_DIR / f"{name}.npz").stat().st_size < 2_000_000
    result = score_vector(head, head.standardizer.mean)  # the average training face
    assert 1.0 <= result.score <= 10.0 and result.word in WORDS and result.spread > 0
    assert 4.5 < result.score < 7.5  # the average face scores near the data set's mean (6.1)


def test_training_selects_by_cross_validation_and_never_sees_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """A noisy linear score on 2 blocks: the CV-selected head recovers it; the test rows cannot steer the choice."""
    from services.scoring.beauty import train
    from services.scoring.beauty.dataset import BeautyLabels

    rng = np.random.default_rng(3)
    n = 300
    signal, noise = rng.normal(size=(n, 6)), rng.normal(size=(n, 20))
    score = np.clip(6.0 + 1.2 * signal[:, 0] - 0.8 * signal[:, 1] + 0.3 * rng.normal(size=n), 1, 10)
    split = np.array(["train"] * 200 + ["val"] * 40 + ["test"] * 60)
    files = [f"{i}.jpg" for i in range(n)]
    monkeypatch.setitem(train.BLOCK_SETS, "toy", ["a.signal", "b.noise"])
    monkeypatch.setattr(train, "DEX_WEIGHT_DECAYS", (1e-3,))  # one DEX fit per fold keeps this test quick

    def fit(target: np.ndarray) -> tuple[BeautyHead, dict]:
        labels = BeautyLabels(files, target, target, split, np.zeros(n, int), {f: f for f in files})
        return train.train_beauty_head({"a.signal": signal, "b.noise": noise}, labels, "toy", progress=False, folds=3)

    head, report = fit(score)
    assert report["chosen"]["kind"] in {"ridge", "dex", "blend"} and report["cv"]["ridge"]["n"] == 240
    assert report["selection"].startswith("3-fold")
    assert report["test"]["pearson"] > 0.9 and 0.5 < report["test_spread_coverage"] < 0.85
    assert head.blocks == ["a.signal", "b.noise"] and head.spread_factor > 0
    scrambled = score.copy()
    scrambled[split == "test"] = rng.permutation(scrambled[split == "test"])
    _, other = fit(scrambled)
    assert other["chosen"] == report["chosen"] and other["cv"] == report["cv"]  # test labels steer nothing
    assert other["test"]["pearson"] < 0.3
