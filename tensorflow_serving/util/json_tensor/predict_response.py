"""Predict response bodies, and the error body, as upstream writes them.

Documented differences: output is compact JSON rather than rapidjson's pretty
printing; tensor outputs are written in sorted name order; a non-`_bytes`
string output that is not valid UTF-8 is written as `{"b64": ...}` for that
element (upstream writes invalid JSON).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
import itertools
import json
from typing import Any

import numpy as np
import orjson

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import targets as targets_lib

_NUMPY_OPTION = orjson.OPT_SERIALIZE_NUMPY


def nonfinite_fragment(arr: np.ndarray) -> orjson.Fragment:
  """JSON for a float array holding NaN/Inf, which orjson writes as null.

  In a float array's JSON every `null` is a non-finite value, in C order, so
  they are swapped for rapidjson's tokens without touching finite values.
  """
  text = orjson.dumps(arr[()] if arr.ndim == 0 else arr, option=_NUMPY_OPTION)
  bad = arr[~np.isfinite(arr)]
  tokens = np.where(
      np.isnan(bad), b"NaN", np.where(bad > 0, b"Infinity", b"-Infinity")
  ).tolist()
  parts = text.split(b"null")
  return orjson.Fragment(
      b"".join(itertools.chain.from_iterable(zip(parts, tokens + [b""])))
  )


def _prepare_numeric(arr: np.ndarray) -> np.ndarray:
  """An array orjson can write: native, C-contiguous, of a type it knows."""
  if targets_lib.BFLOAT16 is not None and arr.dtype == targets_lib.BFLOAT16:
    arr = arr.astype(np.float32)  # Exact.
  elif not arr.dtype.isnative:
    arr = arr.astype(arr.dtype.newbyteorder("="))
  if not arr.flags.c_contiguous:
    arr = arr.copy(order="C")  # Not ascontiguousarray: it makes 0-d 1-d.
  return arr


def _b64_json(value: bytes | str) -> dict[str, str]:
  if isinstance(value, str):
    value = value.encode("utf-8", "surrogatepass")
  return {document.B64_KEY: base64.b64encode(value).decode("ascii")}


def _utf8_or_b64(value: Any) -> Any:
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      return _b64_json(value)
  return value


def _strings_json(arr: np.ndarray, as_b64: bool) -> Any:
  """Nested lists of str (or {"b64": ...}) for a string tensor."""
  flat = arr.ravel().tolist()
  if as_b64:
    values = [_b64_json(v) for v in flat]
  else:
    try:
      values = [v.decode("utf-8") for v in flat]  # The common case.
    except (UnicodeDecodeError, AttributeError):
      values = [_utf8_or_b64(v) for v in flat]
  nested = np.empty(len(values), dtype=object)
  nested[:] = values
  return nested.reshape(arr.shape).tolist()


def _tensor_json(name: str, arr: np.ndarray) -> Any:
  """Something orjson serialises as this tensor's (nested) JSON value."""
  arr = np.asarray(arr)
  kind = arr.dtype.kind
  if kind in "OSU":
    as_b64 = name.endswith(document.BYTES_SUFFIX)
    if kind == "U" and not as_b64:
      return arr.tolist()
    return _strings_json(arr, as_b64)
  if kind == "c" or (kind not in "biuf" and arr.dtype != targets_lib.BFLOAT16):
    raise status.invalid_argument(
        f"Failed to write JSON value for tensor type: {_dtype_name(arr.dtype)}"
    )
  arr = _prepare_numeric(arr)
  if arr.dtype.kind == "f" and not np.isfinite(arr).all():
    return nonfinite_fragment(arr)
  return arr[()] if arr.ndim == 0 else arr  # orjson takes scalars, not 0-d.


def _row_values(name: str, arr: np.ndarray) -> list[Any]:
  """Per-row JSON values of a batched tensor."""
  value = _tensor_json(name, arr)
  if isinstance(value, orjson.Fragment):
    arr = _prepare_numeric(np.asarray(arr))
    return [_tensor_json(name, row) for row in arr]
  return list(value)


def _dtype_name(dtype: np.dtype) -> str:
  target = targets_lib.TARGET_BY_DTYPE.get(dtype)
  return target.name if target is not None else dtype.name


def format_predict_response(
    outputs: Mapping[str, np.ndarray],
    request_format: predict_request.RequestFormat,
) -> bytes:
  """The predict response body: {"predictions": ...} or {"outputs": ...}."""
  if not outputs:
    raise status.invalid_argument("Cannot convert empty tensor map to JSON")
  names = sorted(outputs)
  if request_format == predict_request.ROW:
    batch_size = -1
    for name in names:
      shape = np.shape(outputs[name])
      if not shape:
        raise status.invalid_argument(
            f"Tensor name: {name} has no shape information "
        )
      if batch_size >= 0 and shape[0] != batch_size:
        raise status.invalid_argument(
            f"Tensor name: {name} has inconsistent batch size: {shape[0]} "
            f"expecting: {batch_size}"
        )
      batch_size = shape[0]
    if len(names) == 1:
      body = {"predictions": _tensor_json(names[0], outputs[names[0]])}
    else:
      columns = [_row_values(name, outputs[name]) for name in names]
      body = {"predictions": [dict(zip(names, row)) for row in zip(*columns)]}
  elif request_format == predict_request.COLUMNAR:
    if len(names) == 1:
      body = {"outputs": _tensor_json(names[0], outputs[names[0]])}
    else:
      body = {
          "outputs": {name: _tensor_json(name, outputs[name]) for name in names}
      }
  else:
    raise status.invalid_argument("Invalid request format")
  return orjson.dumps(body, option=_NUMPY_OPTION)


def float32_json(values: np.ndarray) -> Any:
  """float32 values, written shortest-round-trip, NaN/Inf as tokens."""
  values = np.asarray(values, dtype=np.float32)
  if not np.isfinite(values).all():
    return nonfinite_fragment(values)
  return values[()] if values.ndim == 0 else values


def format_error(message: str) -> bytes:
  """Upstream's error body: { "error": "<message>" }."""
  try:
    text = orjson.dumps(message)
  except TypeError:  # Lone surrogates; the stdlib escapes them.
    text = json.dumps(message).encode("ascii")
  return b'{ "error": ' + text + b" }"
