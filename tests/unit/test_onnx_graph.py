"""The ONNX graph replay behind the ArcFace embedding: every supported operator against PyTorch's own functional
ops on a small synthetic graph, the plan's round trip through ``torch.save``/``weights_only``, and clear refusals."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from services.scoring.models.onnx_graph import OnnxGraphNet, plan_from_onnx

RNG = np.random.default_rng(0)


def _init(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.normal(size=shape).astype(np.float32), name)


def _graph(pads: tuple[int, ...] = (1, 1, 1, 1), extra: list[onnx.NodeProto] | None = None) -> bytes:
    """x[1,3,8,8] → Conv(stride 2) → PRelu → depthwise Conv → Add(residual) → Flatten → Gemm → BatchNormalization."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=list(pads), strides=[2, 2]),
        helper.make_node("PRelu", ["c1", "slope"], ["p1"]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Add", ["p1", "c2"], ["a1"]),
        helper.make_node("Flatten", ["a1"], ["f1"], axis=1),
        helper.make_node("Gemm", ["f1", "fw", "fb"], ["g1"], transB=1),
        helper.make_node("BatchNormalization", ["g1", "s", "o", "m", "v"], ["y"], epsilon=1e-5),
        *(extra or []),
    ]
    var = numpy_helper.from_array(RNG.uniform(0.5, 2.0, size=5).astype(np.float32), "v")
    inits = [_init("w1", 4, 3, 3, 3), _init("b1", 4), _init("slope", 4, 1, 1), _init("w2", 4, 1, 3, 3),
             _init("b2", 4), _init("fw", 5, 64), _init("fb", 5), _init("s", 5), _init("o", 5), _init("m", 5), var]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


def _reference(raw: bytes, x: torch.Tensor) -> torch.Tensor:
    graph = onnx.load_from_string(raw).graph
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    c1 = F.conv2d(x, w["w1"], w["b1"], stride=2, padding=1)
    p1 = torch.where(c1 >= 0, c1, c1 * w["slope"])
    a1 = p1 + F.conv2d(p1, w["w2"], w["b2"], padding=1, groups=4)
    g1 = a1.flatten(1) @ w["fw"].T + w["fb"]
    return (g1 - w["m"]) / torch.sqrt(w["v"] + 1e-5) * w["s"] + w["o"]


def test_replayed_graph_matches_the_operators_definitions() -> None:
    raw = _graph()
    plan, state = plan_from_onnx(raw)
    net = OnnxGraphNet(plan)
    net.load_state_dict(state, strict=True)
    net.eval()
    x = torch.from_numpy(RNG.normal(size=(2, 3, 8, 8)).astype(np.float32))
    with torch.inference_mode():
        torch.testing.assert_close(net(x), _reference(raw, x), rtol=1e-5, atol=1e-5)
    assert [n["op"] for n in plan["nodes"]] == ["Conv", "PRelu", "Conv", "Add", "Flatten", "Gemm",
                                               "BatchNormalization"]


def test_plan_and_weights_survive_a_weights_only_round_trip() -> None:
    plan, state = plan_from_onnx(_graph())
    buffer = io.BytesIO()
    torch.save({"plan": plan, "state": state}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    net = OnnxGraphNet(saved["plan"])
    net.load_state_dict(saved["state"], strict=True)
    assert saved["plan"] == plan


def test_unsupported_operators_and_asymmetric_padding_are_refused() -> None:
    with pytest.raises(ValueError, match="Relu"):
        plan_from_onnx(_graph(extra=[helper.make_node("Relu", ["y"], ["z"])]))
    with pytest.raises(ValueError, match="asymmetric"):
        plan_from_onnx(_graph(pads=(0, 0, 1, 1)))
