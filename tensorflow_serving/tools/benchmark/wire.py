"""Just enough protobuf wire format for Predict, without importing TensorFlow.

The generated `predict_pb2` imports `tensorflow.core.framework.tensor_pb2`,
which runs `tensorflow/__init__.py`: about 650 MB and 5 s per load-generator
process, for two messages we only need to write once and skim per response.
So requests are encoded here (once per image, up front) and responses are
walked just far enough to pull out one float output. The field numbers are
those of tensorflow_serving/apis/predict.proto, model.proto and
tensorflow/core/framework/{tensor,tensor_shape}.proto; wire_test checks both
directions against the real generated classes.
"""

from __future__ import annotations

import struct

import numpy as np

DT_FLOAT = 1

# Wire types.
_VARINT = 0
_FIXED64 = 1
_LEN = 2
_FIXED32 = 5


class WireError(ValueError):
  """The bytes are not the message we expected."""


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint(field << 3 | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
  return _key(field, _LEN) + _varint(len(payload)) + payload


def encode_float_tensor(array: np.ndarray) -> bytes:
  """TensorProto{dtype: DT_FLOAT, tensor_shape, tensor_content}.

  The same bytes `tf.make_tensor_proto(array)` produces for a float32 array
  (little-endian tensor_content), the common client encoding.
  """
  array = np.ascontiguousarray(array, dtype="<f4")
  shape = b"".join(
      _len_field(2, _key(1, _VARINT) + _varint(int(size)))
      for size in array.shape
  )
  return (
      _key(1, _VARINT)
      + _varint(DT_FLOAT)
      + _len_field(2, shape)
      + _len_field(4, array.tobytes())
  )


def encode_predict_request(
    model_name: str, signature_name: str, inputs: dict[str, np.ndarray]
) -> bytes:
  """A serialized tensorflow.serving.PredictRequest with float inputs."""
  spec = _len_field(1, model_name.encode())
  if signature_name:
    spec += _len_field(3, signature_name.encode())
  out = _len_field(1, spec)
  for name, array in inputs.items():
    entry = _len_field(1, name.encode()) + _len_field(
        2, encode_float_tensor(array)
    )
    out += _len_field(2, entry)
  return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
  result = 0
  shift = 0
  while True:
    if pos >= len(buf):
      raise WireError("truncated varint")
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise WireError("varint too long")


def _skip_or_read(
    buf: bytes, pos: int, end: int, wire_type: int
) -> tuple[int, int]:
  """(value or payload start, next position) of the field at pos.

  Length-delimited payloads are buf[value:next]; fixed-size values come back
  as little-endian ints. Written as plain loops (no generators): this runs
  once per response inside the load generator.
  """
  if wire_type == _VARINT:
    return _read_varint(buf, pos)
  if wire_type == _LEN:
    byte = buf[pos] if pos < end else 0x80
    size, pos = (byte, pos + 1) if byte < 0x80 else _read_varint(buf, pos)
    if pos + size > end:
      raise WireError("length-delimited field runs past its message")
    return pos, pos + size
  if wire_type == _FIXED32:
    if pos + 4 > end:
      raise WireError("truncated fixed32")
    return int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
  if wire_type == _FIXED64:
    if pos + 8 > end:
      raise WireError("truncated fixed64")
    return int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
  raise WireError(f"unsupported wire type {wire_type}")


def _float_tensor_values(
    buf: bytes, pos: int, end: int
) -> tuple[bytes, tuple[int, int] | None]:
  """A DT_FLOAT TensorProto's values as little-endian float32 bytes.

  Also returns where they lie in `buf` when they are one contiguous run
  (tensor_content, or a single packed float_val), else None.
  """
  dtype = 0
  content = None
  packed: list[tuple[int, int]] = []
  unpacked: list[int] = []
  while pos < end:
    key = buf[pos]
    if key & 0x80:
      key, pos = _read_varint(buf, pos)
    else:
      pos += 1
    field, wire_type = key >> 3, key & 7
    value, stop = _skip_or_read(buf, pos, end, wire_type)
    if field == 1 and wire_type == _VARINT:
      dtype = value
    elif field == 4 and wire_type == _LEN:
      content = (value, stop)
    elif field == 5 and wire_type == _LEN:
      packed.append((value, stop))
    elif field == 5 and wire_type == _FIXED32:
      unpacked.append(value)
    pos = stop
  if pos != end:
    raise WireError("field runs past its message")
  if dtype != DT_FLOAT:
    raise WireError(f"dtype {dtype} is not DT_FLOAT")
  if content is None and len(packed) == 1 and not unpacked:
    content = packed[0]
  if content is not None:
    start, stop = content
    if (stop - start) % 4:
      raise WireError("float values are not a whole number of floats")
    return buf[start:stop], content
  values = b"".join(buf[start:stop] for start, stop in packed)
  if unpacked:
    values += struct.pack(f"<{len(unpacked)}I", *unpacked)
  if len(values) % 4:
    raise WireError("float_val is not a whole number of floats")
  return values, None


def _predict_output(
    buf: bytes, key: bytes
) -> tuple[bytes, tuple[int, int] | None]:
  """(values, their span in buf or None) of PredictResponse.outputs[key]."""
  pos, end = 0, len(buf)
  while pos < end:
    tag = buf[pos]
    if tag & 0x80:
      tag, pos = _read_varint(buf, pos)
    else:
      pos += 1
    start, stop = _skip_or_read(buf, pos, end, tag & 7)
    pos = stop
    if tag != 0x0A:  # outputs (field 1, length-delimited)
      continue
    name = None
    tensor = None
    entry = start
    while entry < stop:
      entry_tag = buf[entry]
      if entry_tag & 0x80:
        entry_tag, entry = _read_varint(buf, entry)
      else:
        entry += 1
      value, after = _skip_or_read(buf, entry, stop, entry_tag & 7)
      if entry_tag == 0x0A:
        name = buf[value:after]
      elif entry_tag == 0x12:
        tensor = (value, after)
      entry = after
    if name == key:
      return (
          (b"", None) if tensor is None else _float_tensor_values(buf, *tensor)
      )
  if pos != end:
    raise WireError("field runs past its message")
  raise WireError(f"no output named {key.decode(errors='replace')!r}")


def predict_output_bytes(buf: bytes, output_name: str) -> bytes:
  """PredictResponse.outputs[output_name] as little-endian float32 bytes.

  Raises WireError when the response is malformed or lacks the output.
  """
  return _predict_output(buf, output_name.encode())[0]


def decode_predict_output(buf: bytes, output_name: str) -> np.ndarray:
  """PredictResponse.outputs[output_name] (a float tensor), flattened."""
  return np.frombuffer(predict_output_bytes(buf, output_name), dtype="<f4")


class OutputReader:
  """predict_output_bytes for a stream of answers from one model, faster.

  Such answers differ only in the values. Once one is parsed, an answer of
  the same length whose bytes around the values are identical must parse the
  same way (everything that shapes the parse lies outside the values), so
  its values are sliced from the same offsets: two C-level comparisons
  instead of a Python walk over the message.
  """

  def __init__(self, output_name: str):
    self._key = output_name.encode()
    self._layout: tuple[int, int, int, bytes, bytes] | None = None

  def __call__(self, buf: bytes) -> bytes:
    layout = self._layout
    if layout is not None:
      length, start, stop, head, tail = layout
      if len(buf) == length and buf.startswith(head) and buf.endswith(tail):
        return buf[start:stop]
    values, span = _predict_output(buf, self._key)
    if span is not None:
      start, stop = span
      self._layout = (len(buf), start, stop, buf[:start], buf[stop:])
    return values
