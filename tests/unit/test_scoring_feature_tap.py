"""Attractiveness features read during the ensemble's own forward pass ("tap") instead of a second pass.

The tapped blocks must be the blocks ``member_features`` computes on its own (the beauty head was trained on those),
and the scoring service must then run no member network twice. Real models on a real face; `make test` converts
them first.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage import data

from libs.common.alignment import align_face
from libs.common.settings import Settings
from services.scoring import attractiveness as attractiveness_module
from services.scoring.attractiveness import Attractiveness
from services.scoring.beauty.features import (
    ARCFACE,
    ARCFACE_MEMBER,
    ARCFACE_MEMBER_BLOCK,
    EMBEDDERS,
    EMBEDDING,
    EMBEDDING_MEMBER,
    EMBEDDING_MEMBER_BLOCK,
    embedder_features,
    member_features,
)
from services.scoring.beauty.minors import minor_probability
from services.scoring.scorer import FaceScorer, mirrors_itself


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's aligned chip and its chip landmarks (an adult face: attractiveness is not withheld)."""
    from services.face.detector import FaceDetector

    image = data.astronaut()
    found = FaceDetector.from_settings().detect(image)
    aligned = align_face(image, found[0].landmarks_array())
    return aligned.chip, aligned.landmarks.astype(np.float32)


@pytest.fixture(scope="module")
def scorer() -> FaceScorer:
    return FaceScorer(Settings().models_dir, profile="default", device="cpu", warmup=False)


def test_tapped_blocks_match_a_separate_feature_pass(scorer: FaceScorer, face) -> None:
    chip, landmarks = face
    beauty = Attractiveness.load("default", minor_threshold=0.2)
    tap = beauty.tap()
    [score] = scorer.score_batch([chip], [landmarks], tap)
    tapped_members = {key.split(".", 1)[0] for key in score.features}
    assert tapped_members == {m for m, flip in tap.items() if m in scorer.configs
                              and flip == (m in scorer.calibration.flip_members or mirrors_itself(scorer.models[m]))}
    for member in tapped_members - {ARCFACE_MEMBER}:  # mirrors itself: test_service_scoring_runs_each_member_once
        alone = member_features(scorer.configs[member], scorer.models[member], [chip], [landmarks],
                                flip=tap[member])
        assert set(alone) == {k for k in score.features if k.startswith(f"{member}.")}
        for key, expected in alone.items():
            got = score.features[key]
            assert got.shape == expected[0].shape, key
            if scorer.autocast[member] is None:  # fp32 in both passes: the same numbers
                np.testing.assert_allclose(got, expected[0], rtol=1e-4, atol=1e-5, err_msg=key)
            elif key.endswith(".p_female"):  # bf16 moves one face's probability by ~0.01 (AMX CPUs: 0.318 vs 0.329)
                assert abs(float(got[0]) - float(expected[0][0])) < 0.03, key
            else:  # bf16 in the ensemble's pass: close, as measured on MEBeauty (mean |Δscore| 0.004)
                scale = float(np.abs(expected[0]).max())
                assert float(np.abs(got - expected[0]).mean()) < 0.02 * scale + 1e-4, key


def test_compiled_members_tap_the_same_features(scorer: FaceScorer, face) -> None:
    """``HOWHOT_MODELS_COMPILE``: a torch.compile'd member wraps its network, and the taps must still find their
    layers, also after an untapped batch traced the graph without them (both failed with KeyError before).
    Compiles on the CPU: ~40 s."""
    chip, landmarks = face
    tap = Attractiveness.load("default", minor_threshold=0.2).tap()
    compiled = FaceScorer(Settings().models_dir, profile="default", device="cpu", compile=True, warmup=False)
    compiled.score_batch([chip, chip], [landmarks, landmarks])  # traced without the hooks
    [got] = compiled.score_batch([chip, chip], [landmarks, landmarks], tap)[:1]
    [expected] = scorer.score_batch([chip], [landmarks], tap)
    assert abs(got.age - expected.age) < 0.05 and abs(got.p_female - expected.p_female) < 0.01
    assert set(got.features) == set(expected.features) and got.features
    for key, value in expected.features.items():
        scale = float(np.abs(value).max())
        assert float(np.abs(got.features[key] - value).max()) < 0.01 * scale + 1e-4, key


def test_service_scoring_runs_each_member_once(scorer: FaceScorer, face, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.scoring.app import ScoringModels

    chip, landmarks = face
    beauty = Attractiveness.load("default", minor_threshold=0.2)
    untapped_calls: list[list[str]] = []
    real_chip_features = attractiveness_module.chip_features

    def counting(models, chips, marks):
        untapped_calls.append(sorted(models))
        return real_chip_features(models, chips, marks)

    monkeypatch.setattr(attractiveness_module, "chip_features", counting)
    embedding_calls: list[str] = []

    def counting_embedding(name, model, chips, marks, flip=True):
        embedding_calls.append(name)
        return embedder_features(name, model, chips, marks, flip)

    monkeypatch.setattr(attractiveness_module, "embedder_features", counting_embedding)
    [(score, extra)] = ScoringModels(scorer, beauty).score([(chip, landmarks)])
    assert untapped_calls == []  # every member the head reads came from the ensemble's pass
    # each face embedding the head reads runs once per batch, except where the profile has a member running the same
    # network on the same crop: the embedding gender member's pass carries dlib's blocks, the ArcFace age member's
    # the ArcFace blocks
    read = sorted(set(EMBEDDERS) & set(beauty.tap()))
    shared = {EMBEDDING: EMBEDDING_MEMBER, ARCFACE: ARCFACE_MEMBER}
    expected = [n for n in read if shared[n] not in scorer.models]
    assert embedding_calls == expected
    if EMBEDDING in beauty.tap() and EMBEDDING_MEMBER in scorer.models:  # the shared embedding is the embedding
        assert EMBEDDING_MEMBER_BLOCK in score.features
        _, per_face = beauty.enrich(scorer, [chip], [landmarks], [score])
        alone = embedder_features(EMBEDDING, beauty.embedders[EMBEDDING], [chip], [landmarks], True)
        for key, value in alone.items():  # embedding and last map, as the standalone network computes them
            np.testing.assert_allclose(per_face[0][key], value[0], rtol=1e-4, atol=1e-4, err_msg=key)
        assert embedding_calls == expected * 2  # the second enrich: no dlib pass of its own
    if ARCFACE in beauty.tap() and ARCFACE_MEMBER in scorer.models:  # the ArcFace blocks from the age member's pass
        assert ARCFACE_MEMBER_BLOCK in score.features
        _, per_face = beauty.enrich(scorer, [chip], [landmarks], [score])
        alone = embedder_features(ARCFACE, beauty.embedders[ARCFACE], [chip], [landmarks], True)
        assert set(alone) <= set(per_face[0])
        for key, value in alone.items():  # embedding (normalised) and last map, as the standalone network gives them
            np.testing.assert_allclose(per_face[0][key], value[0], rtol=1e-4, atol=1e-4, err_msg=key)
        assert ARCFACE not in embedding_calls
    assert 1.0 <= extra["attractiveness"] <= 10.0

    # the second-pass route (what ran before the tap) agrees with it
    plain = scorer.score_batch([chip], [landmarks])
    [reference], _ = beauty.enrich(scorer, [chip], [landmarks], plain)
    # the members run again; the face embedding (no member) runs apart, as does its gender member's tap
    assert untapped_calls and set(untapped_calls[0]) == set(beauty.tap()) - {*EMBEDDERS, EMBEDDING_MEMBER,
                                                                              ARCFACE_MEMBER}
    assert abs(reference["attractiveness"] - extra["attractiveness"]) < 0.1
    assert score.age == pytest.approx(plain[0].age)


def test_the_profile_spread_widens_range_std_and_minors_check_not_the_age(
    scorer: FaceScorer, face, monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip, landmarks = face
    beauty = Attractiveness.load("default", minor_threshold=0.2)
    monkeypatch.setattr(scorer, "calibration", replace(scorer.calibration, spread_sd=0.0, spread_per_year=0.0))
    [sharp] = scorer.score_batch([chip], [landmarks])
    monkeypatch.setattr(scorer, "calibration", replace(scorer.calibration, spread_sd=5.0, spread_per_year=0.3))
    [wide] = scorer.score_batch([chip], [landmarks], beauty.tap())
    assert wide.age == pytest.approx(sharp.age)
    assert wide.age_std > sharp.age_std and wide.age_high - wide.age_low > sharp.age_high - sharp.age_low
    enriched, _ = beauty.enrich(scorer, [chip], [landmarks], [wide])
    assert enriched[0]["p_minor"] == pytest.approx(minor_probability(wide.age_probs), abs=1e-3)
    assert minor_probability(wide.age_probs) > minor_probability(sharp.age_probs)
