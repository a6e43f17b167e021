"""A small ONNX graph (Conv / PRelu / Add / Flatten / Gemm / BatchNormalization) rebuilt as a PyTorch module.

Why not a hand-written architecture: the InsightFace recognition nets ship as exported graphs whose exact topology
(where the residual adds sit, which convolutions are grouped, how the BatchNorms were folded) is the graph itself.
Replaying the graph node by node reproduces it without transcription errors, and onnxruntime is never needed at
run time. The plan (nodes, attributes, tensor names) is plain data saved beside the weights, so ``torch.load`` with
``weights_only=True`` rebuilds the module. Any other operator is refused at conversion time with its name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

SUPPORTED_OPS = ("Conv", "PRelu", "Add", "Flatten", "Gemm", "BatchNormalization")


def node_attributes(node: Any) -> dict[str, Any]:
    """An ONNX node's attributes as Python values."""
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(weight: np.ndarray, bias: np.ndarray | None, attrs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise ValueError(f"asymmetric Conv padding {pads} is not supported")
    groups = int(attrs.get("group", 1))
    spec = {"in": int(weight.shape[1]) * groups, "out": int(weight.shape[0]),
            "kernel": [int(k) for k in weight.shape[2:]], "stride": list(attrs.get("strides", [1, 1])),
            "padding": pads[:2], "dilation": list(attrs.get("dilations", [1, 1])), "groups": groups,
            "bias": bias is not None}
    state = {"weight": weight} | ({"bias": bias} if bias is not None else {})
    return spec, state


def _gemm(weight: np.ndarray, bias: np.ndarray, attrs: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
        raise ValueError(f"Gemm with {attrs} is not supported (only y = x @ W.T + b)")
    weight = weight if attrs.get("transB", 0) else weight.T  # nn.Linear stores out × in
    return {"in": int(weight.shape[1]), "out": int(weight.shape[0])}, {"weight": weight, "bias": bias}


def plan_from_onnx(model_bytes: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(plan, state_dict) of an ONNX graph made of SUPPORTED_OPS; raises on anything else."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    inits = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    nodes: list[dict[str, Any]] = []
    state: dict[str, torch.Tensor] = {}
    for index, node in enumerate(graph.node):
        if node.op_type not in SUPPORTED_OPS:
            raise ValueError(f"ONNX operator {node.op_type} (node {index}) is not supported by onnx_graph")
        attrs = node_attributes(node)
        consts = [inits[name] for name in node.input if name in inits]
        spec: dict[str, Any] = {}
        params: dict[str, np.ndarray] = {}
        if node.op_type == "Conv":
            spec, params = _conv(consts[0], consts[1] if len(consts) > 1 else None, attrs)
        elif node.op_type == "PRelu":
            spec, params = {"channels": int(consts[0].size)}, {"weight": consts[0].reshape(-1)}
        elif node.op_type == "Gemm":
            spec, params = _gemm(consts[0], consts[1], attrs)
        elif node.op_type == "BatchNormalization":
            scale, shift, mean, var = consts
            spec = {"channels": int(scale.size), "eps": float(attrs.get("epsilon", 1e-5))}
            params = {"weight": scale, "bias": shift, "running_mean": mean, "running_var": var}
        elif node.op_type == "Flatten":
            spec = {"axis": int(attrs.get("axis", 1))}
        key = f"n{index}"
        nodes.append({"op": node.op_type, "key": key, "inputs": [n for n in node.input if n not in inits],
                      "output": node.output[0], **spec})
        state.update({f"layers.{key}.{name}": torch.from_numpy(np.ascontiguousarray(value))
                      for name, value in params.items()})
    plan = {"input": graph.input[0].name, "output": graph.output[0].name, "nodes": nodes}
    return plan, state


def _module(node: dict[str, Any]) -> nn.Module | None:
    op = node["op"]
    if op == "Conv":
        return nn.Conv2d(node["in"], node["out"], tuple(node["kernel"]), tuple(node["stride"]),
                         tuple(node["padding"]), tuple(node["dilation"]), node["groups"], node["bias"])
    if op == "PRelu":
        return nn.PReLU(node["channels"])
    if op == "Gemm":
        return nn.Linear(node["in"], node["out"])
    if op == "BatchNormalization":
        return nn.BatchNorm1d(node["channels"], eps=node["eps"])
    return None


class OnnxGraphNet(nn.Module):
    """Runs a plan from ``plan_from_onnx``: one submodule per weighted node, activations kept by tensor name."""

    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__()
        self.plan = plan
        self.layers = nn.ModuleDict({n["key"]: m for n in plan["nodes"] if (m := _module(n)) is not None})
        # each activation is dropped after its last reader: holding every one until the end costs GBs per batch
        last_reader = {name: i for i, node in enumerate(plan["nodes"]) for name in node["inputs"]}
        self._drop_after: list[list[str]] = [[] for _ in plan["nodes"]]
        for name, i in last_reader.items():
            if name != plan["output"]:
                self._drop_after[i].append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.plan["input"]: x}
        for node, drop in zip(self.plan["nodes"], self._drop_after, strict=True):
            args = [values[name] for name in node["inputs"]]
            if node["op"] == "Add":
                out = args[0] + args[1]
            elif node["op"] == "Flatten":
                out = args[0].flatten(node["axis"])
            else:  # Conv, PRelu (per-channel slope on dim 1, as ONNX's (C, 1, 1) broadcast), Gemm, BatchNorm
                out = self.layers[node["key"]](args[0])
            values[node["output"]] = out
            for name in drop:
                del values[name]
        return values[self.plan["output"]]
