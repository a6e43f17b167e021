"""The PyTorch port of retinaface==1.1.1's TensorFlow graph reproduces the original's detections.

The reference JSON was made by running the ORIGINAL frozen graph in TensorFlow (benchmarks/face_make_tf_reference.py);
here the converted weights run through our network and post-processing with the same input protocol — in fp32 for the
port's fidelity, and under bf16 autocast (the detector's default on CPUs with native bf16) for a looser bound.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from libs.common.modelcard import ModelCard
from libs.common.settings import Settings
from services.face.detector import network_outputs
from services.face.models.convert_tf_graph import card_path, fetch, torch_module_name, weights_path
from services.face.models.registry import create_detector_model
from services.face.postprocess import postprocess, prior_boxes

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "data" / "face_retinaface_tf_reference.json"
SHARED_DATA = REPO.parent / "shared" / "data"
GRAPH_SCORE_THRESHOLD = 0.5  # the frozen graph's own NMS score threshold
COMPARE_ABOVE = 0.6  # faces near the graph's 0.5 cut may legitimately flip; compare the confident ones
PIXEL_TOLERANCE = 1.0
SCORE_TOLERANCE = 1e-3
BF16_PIXEL_TOLERANCE = 3.0  # twice the worst bf16 shift seen on these faces (1.4 px); ~1 px mean on FG-NET
STEP = 32

_REF = json.loads(REFERENCE.read_text())


@pytest.fixture(scope="session")
def face_models_dir() -> Path:
    """The model cache (HOWHOT_MODELS_DIR or ./.howhot/models), with the default detector converted into it."""
    models_dir = Settings().models_dir
    fetch(models_dir, progress=False)
    return models_dir


@pytest.fixture(scope="session")
def port(face_models_dir: Path) -> torch.nn.Module:
    return create_detector_model("retinaface_mobilenetv2", face_models_dir)


def astronaut_pair(astronaut: np.ndarray) -> np.ndarray:
    canvas = np.zeros((512, 768, 3), dtype=np.uint8)
    canvas[:, :512] = astronaut
    canvas[:256, 512:] = astronaut[::2, ::2]
    return canvas


def reference_image(record: dict) -> np.ndarray:
    from skimage import data

    source = record["source"]
    if source == "skimage:astronaut":
        return data.astronaut()
    if source == "skimage:astronaut_pair":
        return astronaut_pair(data.astronaut())
    path = SHARED_DATA / source
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared face data (../shared/data) is not beside this checkout")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"], f"{source} changed since the reference"
    return np.asarray(Image.open(path).convert("RGB"))


def assert_matches_reference(
    port: torch.nn.Module, record: dict, autocast_dtype: torch.dtype | None, pixels: float, score: float
) -> None:
    """Same confident faces as the TF graph, every box corner and landmark within ``pixels``, score within ``score``."""
    rgb = reference_image(record)
    h, w = rgb.shape[:2]
    x = np.pad(rgb, ((0, -h % STEP), (0, -w % STEP), (0, 0))).astype(np.float32)
    assert list(x.shape[:2]) == record["input_shape"]
    cfg = port.pretrained_cfg
    tensor = torch.from_numpy(x).permute(2, 0, 1)[None]
    tensor = (tensor - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    outputs = network_outputs(port, tensor, autocast_dtype)
    det = postprocess(*outputs, prior_boxes(*x.shape[:2], cfg.priors), cfg.priors, GRAPH_SCORE_THRESHOLD)[0]
    ours = [i for i in range(len(det.scores)) if det.scores[i] > COMPARE_ABOVE]
    theirs = [f for f in record["faces"] if f["score"] > COMPARE_ABOVE]
    assert len(ours) == len(theirs) and theirs, f"{record['source']}: {len(ours)} faces vs reference {len(theirs)}"
    for face in theirs:
        distances = [np.abs(det.boxes[i].numpy() - face["box"]).max() for i in ours]
        best = ours[int(np.argmin(distances))]
        assert min(distances) < pixels
        assert np.abs(det.landmarks[best].numpy() - np.array(face["landmarks"])).max() < pixels
        assert abs(float(det.scores[best]) - face["score"]) < score


@pytest.mark.parametrize("record", _REF["images"], ids=[r["source"] for r in _REF["images"]])
def test_port_matches_tensorflow_graph(port: torch.nn.Module, record: dict) -> None:
    assert_matches_reference(port, record, None, PIXEL_TOLERANCE, SCORE_TOLERANCE)  # fp32: the port itself


@pytest.mark.parametrize("record", _REF["images"], ids=[r["source"] for r in _REF["images"]])
def test_bf16_network_stays_close_to_tensorflow_graph(port: torch.nn.Module, record: dict) -> None:
    """bf16 autocast finds the same faces, a few pixels from the fp32 answer (= the TF graph's, see above)."""
    assert_matches_reference(port, record, torch.bfloat16, BF16_PIXEL_TOLERANCE, SCORE_TOLERANCE)


def test_fetch_is_idempotent(face_models_dir: Path) -> None:
    weights = weights_path(face_models_dir)
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    cards = fetch(face_models_dir, progress=False)
    assert time.perf_counter() - started < 2.0  # only a hash, no download or conversion
    assert weights.stat().st_mtime_ns == before
    card = ModelCard.load(card_path(face_models_dir))
    assert cards == [card] and card.sha256 and card.task == "face-detection"
    assert card.preprocessing["mean"] == [127.5] * 3 and card.preprocessing["steps"] == [8, 16, 32]


def test_converted_weights_load_strictly_and_count(face_models_dir: Path) -> None:
    state = torch.load(weights_path(face_models_dir), map_location="cpu", weights_only=True)
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert 1_400_000 < params < 1_700_000  # MobileNetV2 x1.0 up to block 15 + FPN-64/SSH/heads: ~1.5 M


@pytest.mark.parametrize(
    ("layer", "module"),
    [
        ("MobileNetV2_extrator/Conv1", "body.conv1"),
        ("MobileNetV2_extrator/expanded_conv_depthwise_BN", "body.blocks.0.depthwise_bn"),
        ("MobileNetV2_extrator/block_13_expand", "body.blocks.13.expand"),
        ("FPN/ConvBN_3/bn", "fpn.merge2.1"),
        ("SSH_2/ConvBN_4/conv", "ssh3.conv7x7_3.0"),
        ("LandmarkHead_1/conv2d_4", "LandmarkHead.1.conv1x1"),
    ],
)
def test_graph_layer_names_map_to_modules(layer: str, module: str) -> None:
    assert torch_module_name(layer) == module
