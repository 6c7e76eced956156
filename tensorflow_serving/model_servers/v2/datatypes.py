"""The Open Inference Protocol's tensor datatypes, as numpy and TensorFlow see them.

The protocol names a tensor's element type with a string (`FP32`, `BYTES`);
the signature knows a TensorFlow DataType and the pipeline moves numpy
arrays. Both v2 codecs (REST and gRPC) share this one table, and the
serialization of BYTES tensors that the protocol's binary forms use (each
element a 4-byte little-endian length, then its bytes).
"""

from __future__ import annotations

import struct

import numpy as np
from tensorflow.core.framework import types_pb2

from tensorflow_serving.util import status

# Every protocol datatype that TensorFlow has: name -> (numpy, TF DataType).
# Multi-byte numbers are little-endian on the wire (binary data, raw
# contents), as the protocol says.
_TABLE: dict[str, tuple[np.dtype, int]] = {
    "BOOL": (np.dtype(np.bool_), types_pb2.DT_BOOL),
    "UINT8": (np.dtype("<u1"), types_pb2.DT_UINT8),
    "UINT16": (np.dtype("<u2"), types_pb2.DT_UINT16),
    "UINT32": (np.dtype("<u4"), types_pb2.DT_UINT32),
    "UINT64": (np.dtype("<u8"), types_pb2.DT_UINT64),
    "INT8": (np.dtype("<i1"), types_pb2.DT_INT8),
    "INT16": (np.dtype("<i2"), types_pb2.DT_INT16),
    "INT32": (np.dtype("<i4"), types_pb2.DT_INT32),
    "INT64": (np.dtype("<i8"), types_pb2.DT_INT64),
    "FP16": (np.dtype("<f2"), types_pb2.DT_HALF),
    "FP32": (np.dtype("<f4"), types_pb2.DT_FLOAT),
    "FP64": (np.dtype("<f8"), types_pb2.DT_DOUBLE),
    "BYTES": (np.dtype(np.object_), types_pb2.DT_STRING),
}
_BY_TF = {tf: name for name, (_, tf) in _TABLE.items()}
_BY_KIND = {
    (np.dtype(dt).kind, np.dtype(dt).itemsize): name
    for name, (dt, _) in _TABLE.items()
    if name != "BYTES"
}
DATATYPES = tuple(_TABLE)
_LENGTH = struct.Struct("<I")


def numpy_dtype(datatype: str) -> np.dtype:
  """numpy dtype of a protocol datatype; INVALID_ARGUMENT if unknown."""
  entry = _TABLE.get(datatype)
  if entry is None:
    raise status.invalid_argument(
        f"invalid datatype '{datatype}': expected one of "
        + ", ".join(DATATYPES)
    )
  return entry[0]


def from_tf(tf_dtype: int) -> str | None:
  """The protocol's name for a TensorFlow DataType (None: it has none)."""
  return _BY_TF.get(tf_dtype)


def from_numpy(dtype: np.dtype) -> str:
  """The protocol's name for an output array's dtype."""
  if dtype.kind in ("O", "S", "U"):
    return "BYTES"
  name = _BY_KIND.get((dtype.kind, dtype.itemsize))
  if name is None:
    raise status.invalid_argument(
        f"the Open Inference Protocol has no datatype for {dtype}"
    )
  return name


def element_count(shape: list[int], where: str) -> int:
  """Elements a declared shape holds; INVALID_ARGUMENT for a bad shape."""
  count = 1
  for dim in shape:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
      raise status.invalid_argument(
          f"{where}: shape must be a list of non-negative integers, got "
          f"{shape}"
      )
    count *= dim
  return count


def as_bytes(value: object) -> bytes:
  if isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode("utf-8")
  return str(value).encode("utf-8")


def serialize_bytes(array: np.ndarray) -> bytes:
  """A BYTES tensor in the protocol's binary form (length-prefixed)."""
  parts = []
  for item in array.ravel():
    data = as_bytes(item)
    parts.append(_LENGTH.pack(len(data)))
    parts.append(data)
  return b"".join(parts)


def deserialize_bytes(data: bytes | memoryview, count: int, where: str):
  """`count` length-prefixed elements, exactly filling `data`."""
  out = np.empty(count, dtype=np.object_)
  view = memoryview(data)
  offset = 0
  for i in range(count):
    if offset + 4 > len(view):
      raise status.invalid_argument(
          f"{where}: BYTES data ends inside element {i} of {count}"
      )
    (length,) = _LENGTH.unpack_from(view, offset)
    offset += 4
    if offset + length > len(view):
      raise status.invalid_argument(
          f"{where}: BYTES data ends inside element {i} of {count}"
      )
    out[i] = bytes(view[offset : offset + length])
    offset += length
  if offset != len(view):
    raise status.invalid_argument(
        f"{where}: {len(view) - offset} bytes left after {count} BYTES "
        "elements"
    )
  return out


def from_buffer(
    data: bytes | memoryview, datatype: str, shape: list[int], where: str
) -> np.ndarray:
  """A tensor from its binary form: raw little-endian, or BYTES elements."""
  count = element_count(shape, where)
  dtype = numpy_dtype(datatype)
  if datatype == "BYTES":
    return deserialize_bytes(data, count, where).reshape(shape)
  expected = count * dtype.itemsize
  if len(data) != expected:
    raise status.invalid_argument(
        f"{where}: expected {expected} bytes of {datatype} data for shape "
        f"{shape}, got {len(data)}"
    )
  return np.frombuffer(data, dtype=dtype).reshape(shape)


def to_buffer(array: np.ndarray) -> bytes:
  """An output's binary form (raw contents, binary data extension)."""
  if array.dtype.kind in ("O", "S", "U"):
    return serialize_bytes(array)
  return np.ascontiguousarray(
      array, dtype=array.dtype.newbyteorder("<")
  ).tobytes()
