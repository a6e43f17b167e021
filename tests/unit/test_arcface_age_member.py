"""The ArcFace age member: registry config and licence, its own face + mirror pooling, the served member against the
evaluation path (cached map features → committed heads), the committed graph plan, and the in-sample flag of
``howhot eval age``. The network tests need the converted ArcFace net (``howhot models fetch``, which `make install`
runs) and skip with a clear message without it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.scoring.beauty.features import ARCFACE, HOOKS, pooled_blocks
from services.scoring.ensemble import CALIBRATION_DIR, EnsembleCalibration, profile_members
from services.scoring.evaluation.predict import arcface_head_output, embedder_kinds
from services.scoring.models import arcface_mbf
from services.scoring.models.arcface_age import NAME, committed_plan
from services.scoring.models.registry import pretrained_config


def test_config_is_research_only_on_the_arcface_crop() -> None:
    cfg = pretrained_config(NAME)
    assert cfg.task == "age" and cfg.converter == "arcface_head" and not cfg.commercial_use
    assert "FG-NET" in cfg.licence and "UTKFace" in cfg.licence and "InsightFace" in cfg.licence
    assert (cfg.crop, cfg.input_size, cfg.color_order) == ("face_frame", arcface_mbf.INPUT_SIZE, "RGB")
    assert cfg.mean == (arcface_mbf.MEAN,) * 3 and cfg.scale == arcface_mbf.SCALE
    assert len(cfg.age_values) == 101
    assert NAME not in profile_members("commercial-safe") and NAME in profile_members("default")
    assert NAME not in EnsembleCalibration.uncalibrated("default").members
    assert embedder_kinds([NAME]) == ["arcface"] and embedder_kinds(["agegender_cc0_age"]) == []


def test_the_member_pools_face_and_mirror_like_the_cached_blocks() -> None:
    """The member mirrors every face itself and pools the map of 2N rows (faces, then mirrors) exactly as
    ``pooled_blocks`` does for the features the heads were trained on: global mean and 2×2 grid, each averaged over
    face and mirror (grid not unflipped). An identity "backbone" makes the hooked map the input itself."""
    from services.scoring.training.heads import HeadEnsemble, HeadSpec
    from services.scoring.training.member import DexHeadMember

    spec = HeadSpec(ARCFACE, "0", relu=False, pooling="gap+grid", in_features=2560, members=2)
    heads = HeadEnsemble(spec).eval()
    member = DexHeadMember(torch.nn.Sequential(torch.nn.Identity()), heads, mirror=True).eval()
    fmap = torch.randn(3, 512, 7, 7)
    blocks = pooled_blocks(ARCFACE, {layer: torch.cat([fmap, fmap.flip(-1)]) for layer in HOOKS[ARCFACE]}, 3, True)
    expected = np.hstack([blocks[f"{ARCFACE}.final_gap"], blocks[f"{ARCFACE}.final_grid"]])
    with torch.no_grad():
        np.testing.assert_allclose(member(fmap).numpy(), heads(torch.from_numpy(expected)).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def models_dir() -> Path:
    from libs.common.settings import Settings
    from services.scoring.models.arcface_registry import NAME as ARCFACE_NAME
    from services.scoring.models.model_files import weights_path

    models_dir = Settings().models_dir
    if not weights_path(models_dir, ARCFACE_NAME).exists():
        pytest.skip(f"{weights_path(models_dir, ARCFACE_NAME)} absent: run `howhot models fetch`")
    return models_dir


def test_committed_plan_is_the_converted_graph(models_dir: Path) -> None:
    """The member builds its backbone from the committed plan; it must be the graph the converter made."""
    from services.scoring.models.arcface_registry import NAME as ARCFACE_NAME
    from services.scoring.models.model_files import weights_path

    saved = torch.load(weights_path(models_dir, ARCFACE_NAME), map_location="cpu", weights_only=True)
    assert json.loads(json.dumps(saved["plan"])) == committed_plan()


def test_served_member_matches_the_evaluation_path(models_dir: Path) -> None:
    """``run_member`` on the live chips (the scorer) and ``arcface_head_output`` on the cached map features
    (``howhot eval age``, ``extract._arcface_rows``) give the same distributions; the member mirrors by itself."""
    from services.scoring.evaluation.extract import ARCFACE_KEY, _arcface_rows
    from services.scoring.members import member_crops, run_member
    from services.scoring.models.registry import create_model

    member = create_model(NAME, models_dir)
    rng = np.random.default_rng(7)
    chips = [rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    marks = [CHIP_TEMPLATE.astype(np.float32)] * 3
    cfg = pretrained_config(NAME)
    served = run_member(cfg, member, member_crops(cfg, chips, marks), flip=False)
    assert served.p_female is None and served.age_probs is not None and served.age_probs.shape == (3, 101)
    np.testing.assert_allclose(served.age_probs.sum(axis=1), 1.0, atol=1e-6)
    features = _arcface_rows(models_dir)(chips, marks)[ARCFACE_KEY]
    cached = arcface_head_output(NAME, [{ARCFACE_KEY: f} for f in features])
    np.testing.assert_allclose(cached.age_probs, served.age_probs, atol=1e-4)
    mirrored = run_member(cfg, member, member_crops(cfg, [c[:, ::-1].copy() for c in chips], marks), flip=False)
    # its own flip TTA makes it (nearly: the face frame's resize is not pixel-symmetric) blind to mirroring
    np.testing.assert_allclose(mirrored.expected_age, served.expected_age, atol=0.05)


def test_default_calibration_runs_it_without_the_ensembles_flip() -> None:
    calibration = EnsembleCalibration.load(CALIBRATION_DIR / "default.json")
    assert NAME in calibration.global_age_weights and NAME not in calibration.flip_members
    assert NAME not in calibration.gender_weights
    assert NAME not in EnsembleCalibration.load(CALIBRATION_DIR / "commercial-safe.json").members


def test_evaluation_scores_training_images_out_of_sample(tmp_path: Path) -> None:
    """``howhot eval age`` knows the images the member trained on by content, whatever the file is called, and scores
    them from the distributions recorded at training time by heads that never saw them (FG-NET: person-disjoint
    folds), not from the shipped heads that did."""
    from services.scoring.eval_age import training_provenance
    from services.scoring.evaluation.data import AgeSample
    from services.scoring.evaluation.extract import ARCFACE_KEY
    from services.scoring.evaluation.predict import IMAGE_DIGEST_KEY
    from services.scoring.models.arcface_age import out_of_sample_probs
    from services.scoring.training.heads import load_heads
    from services.scoring.training.member import committed_head_path
    from tests.conftest import shared_dataset

    extra = load_heads(committed_head_path(pretrained_config(NAME).member))[1]
    trained, recorded = extra["train_images"], out_of_sample_probs(extra)
    assert len(trained) > 5000 and all(len(d) == 16 for d in trained) and set(recorded) <= set(trained)
    unknown = tmp_path / "new.jpg"
    unknown.write_bytes(b"not a training image")
    assert training_provenance(["agegender_cc0_age"], [AgeSample("new.jpg", unknown, 30.0)]) == {}
    fgnet = sorted((shared_dataset("fgnet") / "images").iterdir())[:3]  # all of FG-NET is in its training data
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(fgnet[0].read_bytes())
    samples = [AgeSample("renamed.jpg", renamed, 30.0), *(AgeSample(f.name, f, 30.0) for f in fgnet[1:]),
               AgeSample("new.jpg", unknown, 30.0)]
    provenance = training_provenance([NAME, "agegender_cc0_age"], samples)
    assert provenance["out_of_sample"] == {NAME: [0, 1, 2]} and provenance["in_sample"] == {NAME: []}
    features = np.random.default_rng(0).normal(size=(4, 2560))
    rows = [{ARCFACE_KEY: f, IMAGE_DIGEST_KEY: d} for f, d in zip(features, provenance["digests"], strict=True)]
    output = arcface_head_output(NAME, rows)
    for i in range(3):
        np.testing.assert_allclose(output.age_probs[i], recorded[provenance["digests"][i]])
    plain = arcface_head_output(NAME, [{ARCFACE_KEY: f} for f in features])
    assert not np.allclose(plain.age_probs[:3], output.age_probs[:3])
    np.testing.assert_allclose(plain.age_probs[3], output.age_probs[3])
