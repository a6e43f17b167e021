"""Read dlib's binary serialization of its face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

dlib is not a dependency (it needs a C++ build), so this reimplements exactly the parts of dlib 20.0.1's
serialization that the net uses, following the source:

* integers (dlib/serialize.h ``pack_int``/``unpack_int``): a control byte whose low nibble is the number of bytes that
  follow and whose bit 0x80 is the sign (signed types), then the magnitude little-endian. 0 is ``01 00``.
* floats (``serialize_floating_point`` + dlib/float_details.h): two such integers, an int64 mantissa and an int16
  exponent; the value is ``ldexp(mantissa, exponent)`` (exponents 32000/32001/32002 mean +inf/-inf/NaN).
* bools: the ASCII characters ``'0'``/``'1'``. strings: an unsigned length, then the bytes.
* tensors (dlib/cuda/tensor.h): ``resizable_tensor`` = int version 2, num_samples/k/nr/nc, then the values as raw
  little-endian float32 in NCHW order; ``alias_tensor`` = int version 1 and the four sizes only.
* networks (dlib/dnn/core.h): serialization starts at the loss layer and recurses *before* writing each layer's
  details, so the stream holds every layer's version integer outer→inner, then the input layer, then each layer's
  details plus its bookkeeping (flags, x_grad, cached_output, params_grad) inner→outer. The stream carries no type
  tags, so parsing needs the architecture: ``FACE_RECOGNITION_LAYERS`` spells out dlib's ``anet_type`` (as declared
  in the dlib sdist's tools/python/src/face_recognition.cpp, the same net as examples/dnn_face_recognition_ex.cpp).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLOAT_IS_INF, FLOAT_IS_NINF, FLOAT_IS_NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The byte stream does not match what dlib's serializer writes for the expected layer."""


class DlibReader:
    """A cursor over a dlib serialization byte string, one ``read_*`` per dlib ``deserialize`` overload."""

    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, signed: bool = True, max_bytes: int = 8) -> int:
        """dlib's ``unpack_int``: control byte (sign 0x80, size in the low nibble), then little-endian magnitude."""
        control = self._take(1)[0]
        negative = bool(control & 0x80) if signed else False
        size = control & (0x0F if signed else 0x8F)  # unsigned: a set sign bit makes the size invalid, as in dlib
        if size == 0 or size > max_bytes:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def read_uint(self, max_bytes: int = 8) -> int:
        return self.read_int(signed=False, max_bytes=max_bytes)

    def read_float(self) -> float:
        """dlib's binary float: (int64 mantissa, int16 exponent) → mantissa·2^exponent."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise DlibFormatError(f"old ASCII float format at byte {self.pos} is not supported")
        mantissa = self.read_int(max_bytes=8)
        exponent = self.read_int(max_bytes=2)
        if exponent == FLOAT_IS_INF:
            return math.inf
        if exponent == FLOAT_IS_NINF:
            return -math.inf
        if exponent == FLOAT_IS_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def read_string(self) -> str:
        length = self.read_uint()
        return self._take(length).decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        start = self.pos
        value = self.read_string()
        if value not in allowed:
            raise DlibFormatError(f"expected one of {allowed} at byte {start}, found {value!r}")
        return value

    def expect_version(self, what: str, *allowed: int) -> int:
        start = self.pos
        version = self.read_int()
        if version not in allowed:
            raise DlibFormatError(f"{what}: unexpected version {version} at byte {start} (allowed {allowed})")
        return version

    def read_tensor(self) -> np.ndarray:
        """``resizable_tensor``: version 2, then num_samples, k, nr, nc (long long), then float32 LE values."""
        self.expect_version("resizable_tensor", 2)
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """``alias_tensor``: version 1 and the four sizes (a view into the layer's params)."""
        self.expect_version("alias_tensor", 1)
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return n, k, nr, nc


# --- layer details (dlib/dnn/layers.h, input.h, loss.h) -------------------------------------------------------------


@dataclass
class LayerSpec:
    """One layer of the expected architecture, innermost (input) first; ``args`` are the template arguments."""

    kind: str  # input_rgb_image_sized, con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc_no_bias
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedLayer:
    """A layer's kind, template arguments and what its details held (weights as numpy arrays)."""

    kind: str
    args: dict[str, Any]
    values: dict[str, Any]


def _slice_alias(params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    size = int(np.prod(shape))
    flat = params.reshape(-1)
    if offset + size > flat.size:
        raise DlibFormatError(f"alias {shape} at offset {offset} overruns params of size {flat.size}")
    return flat[offset:offset + size].reshape(shape).copy()


def _read_con(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    version = r.expect_string("con_4", "con_5", "con_6")
    params = r.read_tensor()
    num_filters = r.read_int()
    nr, nc, stride_y, stride_x = r.read_int(), r.read_int(), r.read_int(), r.read_int()
    padding_y, padding_x = r.read_int(), r.read_int()
    filters = r.read_alias_tensor()
    biases = r.read_alias_tensor()
    for _ in range(4):  # learning-rate / weight-decay multipliers (double)
        r.read_float()
    use_bias = r.read_bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.read_bool()  # use_relu (a fused-ReLU flag of newer dlib; the net has explicit relu layers)
    expected = (spec.args["num_filters"], spec.args["nr"], spec.args["nc"], spec.args["stride"], spec.args["stride"])
    if (num_filters, nr, nc, stride_y, stride_x) != expected:
        raise DlibFormatError(f"con: found {(num_filters, nr, nc, stride_y, stride_x)}, expected {expected}")
    # dlib's default padding: stride != 1 → 0, else nr/2 (layers.h con_ template defaults); checked like dlib does
    default_pad = 0 if spec.args["stride"] != 1 else spec.args["nr"] // 2
    if (padding_y, padding_x) != (default_pad, default_pad):
        raise DlibFormatError(f"con: padding {(padding_y, padding_x)} != dlib default {default_pad}")
    weight = _slice_alias(params, 0, filters)  # [num_filters, k, nr, nc] = PyTorch's Conv2d layout
    bias = _slice_alias(params, int(np.prod(filters)), biases).reshape(-1) if use_bias else None
    return {"weight": weight, "bias": bias, "padding": (padding_y, padding_x), "stride": (stride_y, stride_x)}


def _read_affine(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    version = r.expect_string("affine_", "affine_2", "bn_con2")
    if version == "bn_con2":  # a batch-norm layer saved from the training net: dlib folds it into an affine_
        params = r.read_tensor()
        gamma_shape, beta_shape = r.read_alias_tensor(), r.read_alias_tensor()
        r.read_tensor(), r.read_tensor()  # means, invstds of the last batch
        running_means, running_variances = r.read_tensor().reshape(-1), r.read_tensor().reshape(-1)
        r.read_int(), r.read_int()  # num_updates, running_stats_window_size (unsigned long)
        for _ in range(4):
            r.read_float()
        eps = r.read_float()
        gamma = _slice_alias(params, 0, gamma_shape).reshape(-1)
        beta = _slice_alias(params, int(np.prod(gamma_shape)), beta_shape).reshape(-1)
        scale = gamma / np.sqrt(running_variances + eps)
        return {"scale": scale.astype(np.float32), "offset": (beta - scale * running_means).astype(np.float32)}
    params = r.read_tensor()
    gamma_shape, beta_shape = r.read_alias_tensor(), r.read_alias_tensor()
    mode = r.read_int()
    if version == "affine_2" and r.read_bool():  # the "disabled" flag
        raise DlibFormatError("disabled affine layer is not supported")
    if mode != 0:  # CONV_MODE = 0: one scale/offset per channel
        raise DlibFormatError(f"affine: expected CONV_MODE (0), found {mode}")
    scale = _slice_alias(params, 0, gamma_shape).reshape(-1)
    offset = _slice_alias(params, int(np.prod(gamma_shape)), beta_shape).reshape(-1)
    return {"scale": scale, "offset": offset}


def _read_relu(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    if r.expect_string("relu_", "relu_2") == "relu_2" and r.read_bool():
        raise DlibFormatError("disabled relu layer is not supported")
    return {}


def _read_pool(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    r.expect_string(f"{spec.kind}_2")
    nr, nc, stride_y, stride_x = r.read_int(), r.read_int(), r.read_int(), r.read_int()
    padding_y, padding_x = r.read_int(), r.read_int()
    expected = (spec.args["nr"], spec.args["nr"], spec.args["stride"], spec.args["stride"])
    if (nr, nc, stride_y, stride_x) != expected:
        raise DlibFormatError(f"{spec.kind}: found {(nr, nc, stride_y, stride_x)}, expected {expected}")
    default_pad = 0 if spec.args["stride"] != 1 else spec.args["nr"] // 2
    if (padding_y, padding_x) != (default_pad, default_pad):
        raise DlibFormatError(f"{spec.kind}: padding {(padding_y, padding_x)} != dlib default {default_pad}")
    return {"padding": (padding_y, padding_x)}


def _read_add_prev(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    r.expect_string("add_prev_")
    return {}


def _read_fc(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    version = r.expect_string("fc_2", "fc_3")
    num_outputs, num_inputs = r.read_uint(), r.read_uint()
    params = r.read_tensor()
    weights, biases = r.read_alias_tensor(), r.read_alias_tensor()
    bias_mode = r.read_int()
    for _ in range(4):
        r.read_float()
    if version == "fc_3":
        r.read_bool()  # use_bias
    if bias_mode != 1 or num_outputs != spec.args["num_outputs"]:  # FC_NO_BIAS = 1
        raise DlibFormatError(f"fc: bias mode {bias_mode}, outputs {num_outputs}; expected fc_no_bias")
    weight = _slice_alias(params, 0, weights).reshape(num_inputs, num_outputs)  # x·W with W [in, out]
    return {"weight": weight, "biases_alias": biases}


def _read_input(r: DlibReader, spec: LayerSpec) -> dict[str, Any]:
    r.expect_string("input_rgb_image_sized")
    mean = (r.read_float(), r.read_float(), r.read_float())  # avg_red, avg_green, avg_blue
    nr, nc = r.read_uint(), r.read_uint()
    if (nr, nc) != (spec.args["size"], spec.args["size"]):
        raise DlibFormatError(f"input: found {nr}x{nc}, expected {spec.args['size']}")
    return {"mean_rgb": mean, "size": nr}


_DETAIL_READERS = {
    "con": _read_con, "affine": _read_affine, "relu": _read_relu, "max_pool": _read_pool, "avg_pool": _read_pool,
    "add_prev": _read_add_prev, "fc_no_bias": _read_fc,
}


# --- the architecture: dlib's anet_type, input first ----------------------------------------------------------------


def _block(n: int, stride: int) -> list[LayerSpec]:
    """``block<N,affine,stride>`` = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,stride,stride,SUBNET>>>>>."""
    return [
        LayerSpec("con", {"num_filters": n, "nr": 3, "nc": 3, "stride": stride}), LayerSpec("affine"),
        LayerSpec("relu"),
        LayerSpec("con", {"num_filters": n, "nr": 3, "nc": 3, "stride": 1}), LayerSpec("affine"),
    ]


def _ares(n: int) -> list[LayerSpec]:
    """``ares<N>`` = relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>."""
    return [LayerSpec("tag", {"id": 1}), *_block(n, 1), LayerSpec("add_prev", {"tag": 1}), LayerSpec("relu")]


def _ares_down(n: int) -> list[LayerSpec]:
    """``ares_down<N>`` = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>."""
    return [
        LayerSpec("tag", {"id": 1}), *_block(n, 2), LayerSpec("tag", {"id": 2}), LayerSpec("skip", {"tag": 1}),
        LayerSpec("avg_pool", {"nr": 2, "stride": 2}), LayerSpec("add_prev", {"tag": 2}), LayerSpec("relu"),
    ]


def face_recognition_layers() -> list[LayerSpec]:
    """dlib's face recognition ``anet_type`` (ResNet-29ish, 128-d metric embedding), input layer first."""
    layers = [
        LayerSpec("input_rgb_image_sized", {"size": 150}),
        LayerSpec("con", {"num_filters": 32, "nr": 7, "nc": 7, "stride": 2}), LayerSpec("affine"), LayerSpec("relu"),
        LayerSpec("max_pool", {"nr": 3, "stride": 2}),
    ]
    for _ in range(3):  # alevel4
        layers += _ares(32)
    for n, repeats in ((64, 3), (128, 2), (256, 2)):  # alevel3, alevel2, alevel1: ares_down then ares
        layers += _ares_down(n)
        for _ in range(repeats):
            layers += _ares(n)
    layers += _ares_down(256)  # alevel0
    layers += [LayerSpec("avg_pool", {"nr": 0, "stride": 1}), LayerSpec("fc_no_bias", {"num_outputs": 128})]
    return layers


FACE_RECOGNITION_LAYERS = face_recognition_layers()


@dataclass
class DlibNet:
    """A parsed network: loss parameters and every layer, input first."""

    loss: dict[str, float]
    layers: list[ParsedLayer]


def parse_network(data: bytes, layers: list[LayerSpec] | None = None) -> DlibNet:
    """Parse ``loss_metric<...>`` as dlib's ``deserialize(net)`` does, returning each layer's parameters.

    Order (core.h): loss version + loss details; then per layer, outer→inner, its version integer (add_layer: 1-2,
    or 2-3 when its subnet is the input layer; tag and skip: 1); then the input layer; then, inner→outer, each
    add_layer's details followed by 3 bools and the x_grad, cached_output (+params_grad / grad_final and
    sample_expansion_factor) tensors.
    """
    layers = FACE_RECOGNITION_LAYERS if layers is None else layers
    if layers[0].kind != "input_rgb_image_sized":
        raise ValueError("the first layer spec must be the input layer")
    r = DlibReader(data)
    r.expect_version("add_loss_layer", 1)
    loss_version = r.expect_string("loss_metric_", "loss_metric_2")
    loss = {"margin": 0.1, "dist_thresh": 0.75}  # the values loss_metric_ (v1) hard-coded
    if loss_version == "loss_metric_2":
        loss = {"margin": r.read_float(), "dist_thresh": r.read_float()}
    versions: dict[int, int] = {}
    for index in range(len(layers) - 1, 0, -1):  # outer → inner headers
        spec = layers[index]
        if spec.kind in ("tag", "skip"):
            versions[index] = r.expect_version(f"add_{spec.kind}_layer", 1)
        elif index == 1:
            versions[index] = r.expect_version("add_layer(input)", 2, 3)
        else:
            versions[index] = r.expect_version("add_layer", 1, 2)
    parsed = [ParsedLayer(layers[0].kind, layers[0].args, _read_input(r, layers[0]))]
    for index in range(1, len(layers)):  # inner → outer details
        spec = layers[index]
        if spec.kind in ("tag", "skip"):
            parsed.append(ParsedLayer(spec.kind, spec.args, {}))
            continue
        values = _DETAIL_READERS[spec.kind](r, spec)
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
            r.read_bool()
        r.read_tensor()  # x_grad
        r.read_tensor()  # cached_output
        if index == 1:
            r.read_tensor()  # grad_final
            if versions[index] >= 3:
                r.read_int()  # _sample_expansion_factor
        elif versions[index] == 2:
            r.read_tensor()  # params_grad
        parsed.append(ParsedLayer(spec.kind, spec.args, values))
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} trailing bytes after the network")
    return DlibNet(loss=loss, layers=parsed)


# --- encoders (the inverse of the readers; used to build test streams) ----------------------------------------------


def encode_int(value: int, signed: bool = True) -> bytes:
    """dlib's ``pack_int``: size|sign control byte, then the magnitude's bytes little-endian (at least one)."""
    if value < 0 and not signed:
        raise ValueError("negative value for an unsigned integer")
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def encode_float(value: float, digits: int = 24) -> bytes:
    """dlib's ``float_details`` of a float (``digits`` = 24 for float, 53 for double), then two ints."""
    if math.isnan(value):
        return encode_int(0) + encode_int(FLOAT_IS_NAN)
    if math.isinf(value):
        return encode_int(0) + encode_int(FLOAT_IS_INF if value > 0 else FLOAT_IS_NINF)
    fraction, exp = math.frexp(value)
    mantissa = int(fraction * (1 << digits))
    exponent = exp - digits
    for _ in range(8):  # shift off low zero bytes, as float_details::convert_from_T does
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return encode_int(mantissa) + encode_int(exponent)


def encode_string(value: str) -> bytes:
    raw = value.encode("latin-1")
    return encode_int(len(raw), signed=False) + raw


def encode_bool(value: bool) -> bytes:
    return b"1" if value else b"0"


def encode_tensor(array: np.ndarray) -> bytes:
    """``resizable_tensor`` of a 4-d array (NCHW)."""
    if array.ndim != 4:
        raise ValueError("dlib tensors are 4-d")
    head = encode_int(2) + b"".join(encode_int(int(s)) for s in array.shape)
    return head + np.ascontiguousarray(array, dtype="<f4").tobytes()


def encode_alias_tensor(shape: tuple[int, int, int, int]) -> bytes:
    return encode_int(1) + b"".join(encode_int(int(s)) for s in shape)


def float32_bits(value: float) -> int:
    """The IEEE bits of a float32 (handy when checking float round-trips in tests)."""
    return int(struct.unpack("<I", struct.pack("<f", value))[0])
