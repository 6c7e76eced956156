"""TensorProto <-> numpy conversion for the request hot path.

Both directions avoid Python loops over tensor elements (strings excepted,
which are Python objects anyway):

* Decoding reads `tensor_content` with `np.frombuffer` (no copy unless the
  buffer is misaligned) and typed `*_val` fields with `np.array(field, dtype)`,
  which upb feeds to numpy at C speed.
* Encoding does not go through the repeated-field API, which costs about a
  microsecond per element with upb. It writes the protobuf wire format of the
  whole message with numpy (packed fixed-width values are raw bytes, packed
  varints are encoded vectorised) and hands it to one `ParseFromString`.

Decoding follows TensorFlow's `Tensor::FromProto`: `tensor_content` wins when
non-empty and must be exactly shape x itemsize bytes; with typed fields, no
values means zeros, fewer values than elements repeat the last value (so one
value broadcasts), and surplus values are ignored. Decoded arrays may be
read-only views of the proto's bytes.

The DataType enum numbers are fixed by tensorflow/core/framework/types.proto
and the field numbers by tensor.proto, so they are spelled out here: importing
`tensorflow.core.framework.tensor_pb2` imports all of TensorFlow (seconds), so
this module does that only when it must create a TensorProto itself.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from tensorflow_serving.util import status

try:  # ml_dtypes ships with TensorFlow; bfloat16 is optional without it.
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
  _BFLOAT16 = None

# tensorflow/core/framework/types.proto
DT_FLOAT = 1
DT_DOUBLE = 2
DT_INT32 = 3
DT_UINT8 = 4
DT_INT16 = 5
DT_INT8 = 6
DT_STRING = 7
DT_COMPLEX64 = 8
DT_INT64 = 9
DT_BOOL = 10
DT_BFLOAT16 = 14
DT_UINT16 = 17
DT_COMPLEX128 = 18
DT_HALF = 19
DT_UINT32 = 22
DT_UINT64 = 23

# TF's DataTypeString(), for messages; covers the enums a client may send.
DTYPE_NAMES: dict[int, str] = {
    0: "invalid",
    1: "float",
    2: "double",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    9: "int64",
    10: "bool",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    14: "bfloat16",
    15: "qint16",
    16: "quint16",
    17: "uint16",
    18: "complex128",
    19: "half",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
    24: "float8_e5m2",
    25: "float8_e4m3fn",
    26: "float8_e4m3fnuz",
    27: "float8_e4m3b11fnuz",
    28: "float8_e5m2fnuz",
    29: "int4",
    30: "uint4",
}


def dtype_name(dtype_enum: int) -> str:
  """TF's name for a DataType enum value ("float", "int32", ...)."""
  return DTYPE_NAMES.get(dtype_enum, f"unknown dtype enum ({dtype_enum})")


# tensorflow/core/framework/tensor.proto field numbers and wire types.
_WIRE_VARINT = 0
_WIRE_LEN = 2
_F_DTYPE = 1
_F_SHAPE = 2
_F_CONTENT = 4
# TensorShapeProto.dim = 2; TensorShapeProto.Dim.size = 1.
_F_SHAPE_DIM = 2
_F_DIM_SIZE = 1


@dataclasses.dataclass(frozen=True)
class _Kind:
  """How one DataType is stored in numpy and in the TensorProto."""

  enum: int
  dtype: np.dtype  # Little-endian element dtype of the ndarray.
  field: str  # Typed repeated field.
  field_number: int
  field_dtype: np.dtype  # dtype in which np.array() reads the typed field.
  # "fixed": packed raw little-endian values; "varint": packed varints;
  # "bytes": repeated bytes (strings).
  encoding: str


def _kinds() -> list[_Kind]:
  f4, f8 = np.dtype("<f4"), np.dtype("<f8")
  i4, i8 = np.dtype("<i4"), np.dtype("<i8")
  kinds = [
      _Kind(DT_FLOAT, f4, "float_val", 5, f4, "fixed"),
      _Kind(DT_DOUBLE, f8, "double_val", 6, f8, "fixed"),
      _Kind(DT_INT32, i4, "int_val", 7, i4, "varint"),
      _Kind(DT_UINT8, np.dtype("u1"), "int_val", 7, i4, "varint"),
      _Kind(DT_INT16, np.dtype("<i2"), "int_val", 7, i4, "varint"),
      _Kind(DT_INT8, np.dtype("i1"), "int_val", 7, i4, "varint"),
      _Kind(DT_UINT16, np.dtype("<u2"), "int_val", 7, i4, "varint"),
      _Kind(
          DT_STRING,
          np.dtype(object),
          "string_val",
          8,
          np.dtype(object),
          "bytes",
      ),
      _Kind(DT_COMPLEX64, np.dtype("<c8"), "scomplex_val", 9, f4, "fixed"),
      _Kind(DT_INT64, i8, "int64_val", 10, i8, "varint"),
      _Kind(DT_BOOL, np.dtype("?"), "bool_val", 11, np.dtype("?"), "varint"),
      _Kind(DT_COMPLEX128, np.dtype("<c16"), "dcomplex_val", 12, f8, "fixed"),
      _Kind(DT_HALF, np.dtype("<f2"), "half_val", 13, i4, "varint"),
      _Kind(
          DT_UINT32,
          np.dtype("<u4"),
          "uint32_val",
          16,
          np.dtype("<u4"),
          "varint",
      ),
      _Kind(
          DT_UINT64,
          np.dtype("<u8"),
          "uint64_val",
          17,
          np.dtype("<u8"),
          "varint",
      ),
  ]
  if _BFLOAT16 is not None:
    kinds.append(_Kind(DT_BFLOAT16, _BFLOAT16, "half_val", 13, i4, "varint"))
  return kinds


_BY_ENUM: dict[int, _Kind] = {k.enum: k for k in _kinds()}
_BY_DTYPE: dict[np.dtype, _Kind] = {
    k.dtype: k for k in _BY_ENUM.values() if k.enum != DT_STRING
}

_INT64_MAX = (1 << 63) - 1


def numpy_dtype(dtype_enum: int) -> np.dtype:
  """The numpy dtype for a DataType enum (object for DT_STRING).

  Raises ServingError(INVALID_ARGUMENT) for types this codec cannot hold.
  """
  kind = _BY_ENUM.get(dtype_enum)
  if kind is None:
    raise status.invalid_argument(
        f"Unsupported tensor dtype: {dtype_name(dtype_enum)}"
    )
  return kind.dtype


def dtype_enum(dtype: Any) -> int:
  """The DataType enum for a numpy dtype (str/bytes/object -> DT_STRING)."""
  dtype = np.dtype(dtype)
  if dtype.kind in "OSU":
    return DT_STRING
  kind = _BY_DTYPE.get(
      dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
  )
  if kind is None:
    raise status.invalid_argument(f"Unsupported numpy dtype: {dtype}")
  return kind.enum


# -- Decoding ------------------------------------------------------------------


def _shape_str(shape: tuple[int, ...]) -> str:
  return "[" + ",".join(str(d) for d in shape) + "]"


def tensor_proto_to_ndarray(proto: Any) -> np.ndarray:
  """Decodes a TensorProto into an ndarray (object array of bytes for strings).

  Raises ServingError(INVALID_ARGUMENT) for an unsupported dtype, an invalid
  shape, or `tensor_content` whose size does not match the shape.
  """
  kind = _BY_ENUM.get(proto.dtype)
  if kind is None:
    raise status.invalid_argument(
        f"Unsupported tensor dtype: {dtype_name(proto.dtype)}"
    )
  shape_proto = proto.tensor_shape
  if shape_proto.unknown_rank:
    raise status.invalid_argument("Cannot decode a tensor of unknown rank")
  shape = tuple(d.size for d in shape_proto.dim)
  num_elements = 1
  for d in shape:
    if d < 0:
      raise status.invalid_argument(
          f"Tensor shape {_shape_str(shape)} has a negative dimension"
      )
    num_elements *= d
  if num_elements > _INT64_MAX:
    raise status.invalid_argument(
        f"Tensor shape {_shape_str(shape)} has too many elements"
    )

  content = proto.tensor_content
  if content:
    if kind.enum == DT_STRING:
      return _decode_string_content(content, num_elements).reshape(shape)
    expected = num_elements * kind.dtype.itemsize
    if len(content) != expected:
      raise status.invalid_argument(
          f"tensor_content has {len(content)} bytes but a "
          f"{dtype_name(kind.enum)} tensor of shape {_shape_str(shape)} needs "
          f"{expected}"
      )
    arr = np.frombuffer(content, dtype=kind.dtype)
    if not arr.flags.aligned:
      arr = arr.copy()
    return arr.reshape(shape)
  return _decode_typed(proto, kind, shape, num_elements)


def _decode_typed(
    proto: Any, kind: _Kind, shape: tuple[int, ...], num_elements: int
) -> np.ndarray:
  values = getattr(proto, kind.field)
  if kind.enum == DT_STRING:
    flat = np.array(values, dtype=object)
  else:
    flat = np.array(values, dtype=kind.field_dtype)
    if kind.enum in (DT_COMPLEX64, DT_COMPLEX128):
      flat = flat[: flat.size - flat.size % 2].view(kind.dtype)
    elif kind.enum in (DT_HALF, DT_BFLOAT16):
      flat = flat.astype(np.uint16).view(kind.dtype)
    elif flat.dtype != kind.dtype:
      flat = flat.astype(kind.dtype)  # Wraps like C++'s static_cast.
  count = flat.size
  if count == num_elements:
    return flat.reshape(shape)
  if count == 0:
    if kind.enum == DT_STRING:
      return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=kind.dtype)
  if count > num_elements:
    return flat[:num_elements].reshape(shape)
  # Fewer values than elements: the last value fills the rest.
  out = np.empty(num_elements, dtype=kind.dtype)
  out[:count] = flat
  out[count:] = flat[-1]
  return out.reshape(shape)


def _decode_string_content(content: bytes, num_elements: int) -> np.ndarray:
  """TF's packed string encoding: n varint32 lengths, then the bytes."""
  lengths = []
  pos = 0
  try:
    for _ in range(num_elements):
      value, shift = 0, 0
      while True:
        byte = content[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
          break
        shift += 7
        if shift > 28:
          raise IndexError
      lengths.append(value)
  except IndexError:
    raise status.invalid_argument(
        "Malformed tensor_content for a string tensor"
    ) from None
  if pos + sum(lengths) != len(content):
    raise status.invalid_argument(
        "Malformed tensor_content for a string tensor"
    )
  out = np.empty(num_elements, dtype=object)
  for i, length in enumerate(lengths):
    out[i] = content[pos : pos + length]
    pos += length
  return out


# -- Encoding ------------------------------------------------------------------


def _varint(value: int) -> bytes:
  """One unsigned varint (for tags, lengths and scalars)."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _tag(field_number: int, wire_type: int) -> bytes:
  return _varint((field_number << 3) | wire_type)


# Measured on upb: extending a repeated varint field from a list costs about
# 60 ns per element; the vectorised encoder below costs a few numpy calls per
# 7-bit group plus a few ns per element, so it wins for big tensors of
# small-ish numbers. Values under 128 (bools, small ids) are always one byte.
_VECTORIZE_MIN_ELEMENTS = 2048
_VECTORIZE_MAX_WIDTH = 5


def _packed_varints(values: np.ndarray) -> bytes | None:
  """Packs uint64 values as varints, or None when upb would be faster."""
  n = values.size
  if n == 0:
    return b""
  vmax = int(values.max())
  if vmax < 0x80:
    return values.astype(np.uint8).tobytes()
  width = (vmax.bit_length() + 6) // 7
  if n < _VECTORIZE_MIN_ELEMENTS or width > _VECTORIZE_MAX_WIDTH:
    return None
  # Column j holds 7-bit group j; only 1-D (strided) numpy ops, which are
  # much faster than 2-D ones with a tiny inner dimension.
  groups = np.empty((n, width), dtype=np.uint8)
  keep = np.empty((n, width), dtype=np.bool_)
  keep[:, 0] = True
  rest = values
  for j in range(width):
    low = rest.astype(np.uint8)
    low &= 0x7F
    if j + 1 < width:
      rest = rest >> np.uint64(7)
      more = rest != 0
      keep[:, j + 1] = more
      low |= more.view(np.uint8) << 7
    groups[:, j] = low
  return groups.ravel()[keep.ravel()].tobytes()


def _as_uint64(flat: np.ndarray, kind: _Kind) -> np.ndarray:
  """The varint payload values of a typed field, as uint64."""
  if kind.enum in (DT_HALF, DT_BFLOAT16):
    return flat.view(np.uint16).astype(np.uint64)
  if flat.dtype.kind == "u" or flat.dtype.kind == "b":
    return flat.astype(np.uint64)
  # Signed: protobuf sign-extends int32 to 64 bits.
  return flat.astype(np.int64).view(np.uint64)


def _len_field(field_number: int, payload: bytes) -> list[bytes]:
  return [_tag(field_number, _WIRE_LEN), _varint(len(payload)), payload]


@functools.cache
def _tensor_proto_class():
  from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-import-not-at-top

  return tensor_pb2.TensorProto


def _string_list(flat: np.ndarray) -> list[bytes]:
  values = flat.tolist()
  if flat.dtype.kind == "S" or set(map(type, values)) <= {bytes}:
    return values  # The common case, checked without a Python-level loop.
  return [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]


def ndarray_to_tensor_proto(
    arr: Any, use_tensor_content: bool = False, out: Any | None = None
) -> Any:
  """Encodes an array into a TensorProto (`out`, cleared first, or a new one).

  Values go to the typed `*_val` field, or with `use_tensor_content` to the
  packed `tensor_content` bytes; strings (object arrays of bytes/str, or
  numpy S/U arrays) always use `string_val`. Raises
  ServingError(INVALID_ARGUMENT) for dtypes TensorFlow has no type for.
  """
  arr = np.asarray(arr)
  enum = dtype_enum(arr.dtype)
  kind = _BY_ENUM[enum]
  header = [_tag(_F_DTYPE, _WIRE_VARINT), _varint(enum)]
  shape = bytearray()
  for d in arr.shape:
    dim = _tag(_F_DIM_SIZE, _WIRE_VARINT) + _varint(d)
    shape += _tag(_F_SHAPE_DIM, _WIRE_LEN) + _varint(len(dim)) + dim
  header += _len_field(_F_SHAPE, bytes(shape))
  if out is None:
    out = _tensor_proto_class()()

  if enum == DT_STRING:
    out.ParseFromString(b"".join(header))
    if arr.size:
      out.string_val.extend(_string_list(arr.ravel()))
    return out

  flat = arr.ravel()
  if flat.dtype != kind.dtype:
    flat = flat.astype(kind.dtype)  # Byte order only.
  if not flat.size:
    payload = []
  elif use_tensor_content:
    payload = _len_field(_F_CONTENT, flat.tobytes())
  elif kind.encoding == "fixed":
    payload = _len_field(kind.field_number, flat.tobytes())
  else:
    packed = _packed_varints(_as_uint64(flat, kind))
    if packed is None:
      out.ParseFromString(b"".join(header))
      if kind.enum in (DT_HALF, DT_BFLOAT16):
        flat = flat.view(np.uint16)
      getattr(out, kind.field).extend(flat.tolist())
      return out
    payload = _len_field(kind.field_number, packed)
  out.ParseFromString(b"".join(header + payload))
  return out
