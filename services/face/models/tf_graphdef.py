"""A minimal reader for TensorFlow ``GraphDef`` protobufs, so frozen graphs can be converted without TensorFlow.

Only the parts a converter needs are decoded: node name, op, inputs and attributes (strings, ints, floats, bools,
types, shapes, lists and constant tensors). The protobuf wire format is decoded by hand because TensorFlow's compiled
protos only come with TensorFlow itself (a ~500 MB dependency we refuse for a one-off conversion).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# protobuf wire types
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# tensorflow DataType enum values -> numpy dtypes (types.proto)
TF_DTYPES: dict[int, Any] = {
    1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
    19: np.float16,
}
_DT_STRING = 7


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def iter_fields(buf: bytes) -> Any:
    """Yield ``(field_number, wire_type, value)`` for each field of one serialized message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == _FIXED32:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(wire: int, value: Any) -> list[int]:
    if wire == _VARINT:
        return [_signed64(value)]
    out, pos = [], 0
    while pos < len(value):
        item, pos = _read_varint(value, pos)
        out.append(_signed64(item))
    return out


def _packed_floats(wire: int, value: Any) -> list[float]:
    if wire == _FIXED32:
        return [struct.unpack("<f", value)[0]]
    return list(np.frombuffer(value, dtype="<f4"))


def parse_shape(buf: bytes) -> list[int] | None:
    """TensorShapeProto -> list of dims (-1 unknown), or None for unknown rank."""
    dims: list[int] = []
    for number, _wire, value in iter_fields(buf):
        if number == 2:
            size = 0
            for n2, _w2, v2 in iter_fields(value):
                if n2 == 1:
                    size = _signed64(v2)
            dims.append(size)
        elif number == 3 and value:
            return None
    return dims


def parse_tensor(buf: bytes) -> np.ndarray:
    """TensorProto -> numpy array (tensor_content or the typed repeated value fields, broadcast like TF does)."""
    dtype_enum, shape, content = 1, [], None
    values: list[Any] = []
    for number, wire, value in iter_fields(buf):
        if number == 1:
            dtype_enum = value
        elif number == 2:
            shape = parse_shape(value) or []
        elif number == 4:
            content = value
        elif number == 5:
            values.extend(_packed_floats(wire, value))
        elif number == 6:
            values.extend(np.frombuffer(value, "<f8") if wire == _LEN else struct.unpack("<d", value))
        elif number in (7, 10, 11, 13):
            values.extend(_packed_varints(wire, value))
        elif number == 8:
            values.append(value)
    if dtype_enum == _DT_STRING:
        return np.array(values, dtype=object)
    dtype = TF_DTYPES.get(dtype_enum)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype enum {dtype_enum}")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()
    is_half = dtype_enum == 19  # half_val holds the raw 16-bit patterns
    arr = np.array(values, dtype=np.uint16).view(np.float16) if is_half else np.array(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 0:
        return np.zeros(shape, dtype=dtype)
    return np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=arr.dtype)]).reshape(shape)


def _parse_attr(buf: bytes) -> Any:
    for number, _wire, value in iter_fields(buf):
        if number == 1:
            return _parse_list(value)
        if number == 2:
            return value.decode("utf-8", "replace")
        if number == 3:
            return _signed64(value)
        if number == 4:
            return struct.unpack("<f", value)[0]
        if number == 5:
            return bool(value)
        if number == 6:
            return ("dtype", value)
        if number == 7:
            return parse_shape(value)
        if number == 8:
            return parse_tensor(value)
        if number == 10:
            return ("func", value)
    return None


def _parse_list(buf: bytes) -> list[Any]:
    out: list[Any] = []
    for number, wire, value in iter_fields(buf):
        if number == 2:
            out.append(value.decode("utf-8", "replace"))
        elif number in (3, 5, 6):
            out.extend(_packed_varints(wire, value))
        elif number == 4:
            out.extend(_packed_floats(wire, value))
        elif number == 7:
            out.append(parse_shape(value))
        elif number == 8:
            out.append(parse_tensor(value))
    return out


@dataclass
class Node:
    """One GraphDef node: what it computes (op), from what (inputs) and its attributes."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)


def parse_graphdef(buf: bytes) -> dict[str, Node]:
    """Serialized GraphDef -> ``{node name: Node}`` in file order (the top-level graph only, not function library)."""
    nodes: dict[str, Node] = {}
    for number, _wire, value in iter_fields(buf):
        if number != 1:
            continue
        node = Node(name="", op="")
        for n2, _w2, v2 in iter_fields(value):
            if n2 == 1:
                node.name = v2.decode()
            elif n2 == 2:
                node.op = v2.decode()
            elif n2 == 3:
                node.inputs.append(v2.decode())
            elif n2 == 5:
                key, attr = "", None
                for n3, _w3, v3 in iter_fields(v2):
                    if n3 == 1:
                        key = v3.decode()
                    elif n3 == 2:
                        attr = _parse_attr(v3)
                node.attrs[key] = attr
        nodes[node.name] = node
    return nodes
