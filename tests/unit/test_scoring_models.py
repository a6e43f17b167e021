"""Every registered scoring member builds and runs; converted weights reproduce the original runtimes' outputs.

The reference numbers come from benchmarks/scoring_make_references.py (TensorFlow for the Keras WRN, onnxruntime for
the CC0 ONNX nets, run in a throwaway venv). Converted weights are fetched once per session into
``Settings().models_dir`` by the idempotent ``fetch``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from libs.common.modelcard import ModelCard
from libs.common.settings import Settings
from services.scoring.models import create_model, fetch, list_models, pretrained_config
from services.scoring.models.registry import card_path, weights_path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "utkface"
PORT_TOLERANCE = 1e-4  # float32 port vs original runtime, probabilities


@pytest.fixture(scope="session")
def scoring_models_dir() -> Path:
    """Converted weights for every member (downloads and converts on the first run only)."""
    models_dir = Settings().models_dir
    fetch(models_dir, progress=False)  # a failing fetch is a failure: `make test` runs `howhot models fetch` first
    return models_dir


@pytest.fixture(scope="module")
def loaded(scoring_models_dir: Path) -> dict[str, torch.nn.Module]:
    """Each pretrained member loaded once for this module (the WRN's 98 MB take a while to read)."""
    return {name: create_model(name, scoring_models_dir) for name in list_models()}


def reference_image(name: str) -> np.ndarray:
    """Same inputs as benchmarks/scoring_make_references.py."""
    if name == "synthetic":
        yy, xx = np.mgrid[0:200, 0:200].astype(np.float64)
        rgb = np.stack([127 + 120 * np.sin(xx / 17.0), 127 + 120 * np.cos(yy / 23.0), (xx + yy) * 0.6], axis=-1)
        return np.clip(rgb, 0, 255).astype(np.uint8)
    path = DATA / "images" / name
    if not path.exists():
        pytest.skip(f"{path} absent (../shared/data not available)")
    return np.asarray(Image.open(path).convert("RGB"))


def resized(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def _cases(file: str) -> list[dict]:
    return json.loads((REPO / "tests" / "data" / file).read_text())["cases"]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs_on_tiny_input(name: str, loaded: dict[str, torch.nn.Module]) -> None:
    """Pretrained members (already loaded: building the WRN twice costs seconds) run on a 2-image batch."""
    cfg = pretrained_config(name)
    model = loaded[name]
    x = torch.rand(2, 3, cfg.input_size, cfg.input_size) * 255
    with torch.inference_mode():
        out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    for probs in outs:
        assert probs.shape[0] == 2
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    if cfg.age_values:
        assert any(p.shape[1] == len(cfg.age_values) for p in outs)


@pytest.mark.parametrize("name", list_models())
def test_fetch_is_idempotent_and_cards_describe_the_weights(name: str, scoring_models_dir: Path) -> None:
    before = weights_path(scoring_models_dir, name).stat().st_mtime_ns
    (card,) = fetch(scoring_models_dir, progress=False, names=[name])
    assert weights_path(scoring_models_dir, name).stat().st_mtime_ns == before  # not converted again
    assert ModelCard.load(card_path(scoring_models_dir, name)) == card
    assert card.commercial_use == pretrained_config(name).commercial_use
    assert card.preprocessing["input_size"] == pretrained_config(name).input_size


def test_research_only_weights_are_marked_so() -> None:
    wrn = pretrained_config("wrn16_8_imdbwiki").card()
    assert not wrn.commercial_use and "research" in wrn.licence.lower()
    assert pretrained_config("agegender_cc0_age").card().commercial_use


def _available(cases: list[dict]) -> list[dict]:
    return [c for c in cases if c["image"] == "synthetic" or (DATA / "images" / c["image"]).exists()]


@pytest.fixture(scope="module")
def wrn_outputs(loaded: dict[str, torch.nn.Module]) -> dict[str, tuple[float, np.ndarray]]:
    """P(female) and P(age) of the port for every reference image, in one batch."""
    cases = _available(_cases("scoring_wrn_reference.json"))
    bgr = np.stack([resized(reference_image(c["image"]), 64)[..., ::-1] for c in cases]).astype(np.float32)
    with torch.inference_mode():
        gender, age = loaded["wrn16_8_imdbwiki"](torch.from_numpy(bgr).permute(0, 3, 1, 2).contiguous())
    return {c["image"]: (float(gender[i, 0]), age[i].double().numpy()) for i, c in enumerate(cases)}


@pytest.fixture(scope="module")
def cc0_outputs(loaded: dict[str, torch.nn.Module]) -> dict[str, tuple[float, np.ndarray]]:
    """P(female) and P(age) of the CC0 ports for every reference image, in one batch each."""
    cases = _available(_cases("scoring_cc0_reference.json"))
    mean = np.asarray(pretrained_config("agegender_cc0_age").mean, dtype=np.float32)

    def prep(size: int) -> torch.Tensor:
        x = np.stack([resized(reference_image(c["image"]), size) for c in cases]).astype(np.float32)
        return torch.from_numpy(((x - mean) / np.float32(256.0)).transpose(0, 3, 1, 2).copy())

    with torch.inference_mode():
        age = loaded["agegender_cc0_age"](prep(64)).double().numpy()
        gender = loaded["agegender_cc0_gender"](prep(32)).double().numpy()
    return {c["image"]: (float(gender[i, 0]), age[i]) for i, c in enumerate(cases)}


@pytest.mark.parametrize("case", _cases("scoring_wrn_reference.json"), ids=lambda c: c["image"][:12])
def test_wrn_port_matches_keras(case: dict, wrn_outputs: dict[str, tuple[float, np.ndarray]]) -> None:
    if case["image"] not in wrn_outputs:
        pytest.skip("reference face absent (../shared/data not available)")
    p_female, age = wrn_outputs[case["image"]]
    assert abs(p_female - case["p_female"]) < PORT_TOLERANCE
    np.testing.assert_allclose(age, case["age_probs"], atol=PORT_TOLERANCE)
    assert abs(float(age @ np.arange(101.0)) - case["age"]) < 1e-3


@pytest.mark.parametrize("case", _cases("scoring_cc0_reference.json"), ids=lambda c: c["image"][:12])
def test_cc0_ports_match_onnxruntime(case: dict, cc0_outputs: dict[str, tuple[float, np.ndarray]]) -> None:
    if case["image"] not in cc0_outputs:
        pytest.skip("reference face absent (../shared/data not available)")
    p_female, age = cc0_outputs[case["image"]]
    assert abs(p_female - case["p_female"]) < PORT_TOLERANCE
    np.testing.assert_allclose(age, case["age_probs"], atol=PORT_TOLERANCE)
    values = np.asarray(pretrained_config("agegender_cc0_age").age_values)
    assert abs(float(age @ values) - case["age"]) < 1e-3
