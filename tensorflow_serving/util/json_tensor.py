"""REST JSON <-> numpy tensors, as upstream's util/json_tensor.cc does it.

Requests are parsed with orjson (falling back to the stdlib `json` module only
for the `NaN`/`Infinity` tokens orjson rejects) and converted with
`np.array` on the nested lists, so no Python code runs per element on the
success path for numeric inputs. Whenever that fast path has any doubt
(ragged nesting, a value of the wrong JSON type, a number out of range) the
exact path re-walks the value the way upstream does, so errors carry
upstream's messages. Strings always take the exact path; each element is a
Python object anyway.

Upstream behaviour kept on purpose: numbers for float inputs may be JSON ints
or decimals, int inputs reject decimals (`1.0` included) and bools, bool
inputs accept only true/false, and integers are checked for exact
representability in float/double ("without loss of precision").

Documented differences:
* Narrow ints (int8/int16/uint8/uint16) must fit the dtype; upstream only
  checks int32 range and then wraps.
* half, bfloat16 and uint16 inputs are accepted (upstream: UNIMPLEMENTED).
* Errors about ragged nesting name the input, where it happened and the
  shape the first elements imply.
* A mix of ints and decimals above 2**24 in one float input is rounded rather
  than rejected (after numpy's conversion the ints are indistinguishable).
* Output is compact JSON rather than rapidjson's pretty printing; tensor
  outputs are written in sorted name order.
* A non-`_bytes` string output that is not valid UTF-8 is written as
  `{"b64": ...}` for that element (upstream writes invalid JSON).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
import dataclasses
import functools
import itertools
import json
import math
import threading
from typing import (
    Any,
    Literal,
    NamedTuple,
    Protocol,
)

import numpy as np
import orjson
import simdjson

from tensorflow_serving.util import status
from tensorflow_serving.util.status import ServingError

try:  # ml_dtypes ships with TensorFlow.
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
  _BFLOAT16 = None

ROW = "row"
COLUMNAR = "columnar"
RequestFormat = Literal["row", "columnar"]

_B64_KEY = "b64"
_BYTES_SUFFIX = "_bytes"
_NUMPY_OPTION = orjson.OPT_SERIALIZE_NUMPY

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_MAX_RANK = 64  # numpy's limit on dimensions.


class TensorSpecLike(Protocol):
  """What parsing needs from a signature input: its dtype and shape.

  `dtype` is a numpy dtype (object for strings), a TF DataType enum int, or a
  tf.DType; `shape` is a list of ints (-1 unknown) or None (unknown rank).
  """

  dtype: Any
  shape: Sequence[int] | None


@dataclasses.dataclass(frozen=True)
class PredictJsonRequest:
  signature_name: str
  inputs: dict[str, np.ndarray]
  format: RequestFormat


class ExampleRequest(NamedTuple):
  """A parsed classify/regress body; examples are serialized tf.Examples."""

  signature_name: str
  context: bytes | None
  examples: list[bytes]


class JsonDocument(dict):
  """A parsed request body that keeps the raw bytes for one cheap question.

  numpy turns JSON bools among numbers into 0/1 silently. When a numeric
  input holds a 0 or 1, `may_contain_bools` tells from the raw body (no
  `true`/`false` token anywhere) that no bool hides there; a scan of the
  raw bytes is several times cheaper than checking element types.
  """

  __slots__ = ("_body", "_may_contain_bools")

  def __init__(self, doc: dict[str, Any], body: bytes | str | None = None):
    super().__init__(doc)
    self._body = body
    self._may_contain_bools: bool | None = None

  @property
  def may_contain_bools(self) -> bool:
    if self._may_contain_bools is None:
      body = self._body
      if body is None:
        self._may_contain_bools = True
      elif isinstance(body, str):
        self._may_contain_bools = "true" in body or "false" in body
      else:
        self._may_contain_bools = b"true" in body or b"false" in body
      self._body = None
    return self._may_contain_bools


# -- Target dtypes -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
  """How JSON values convert to one tensor dtype."""

  name: str  # TF's DataTypeString, used in messages.
  dtype: np.dtype | None  # None: unsupported (UNIMPLEMENTED).
  kind: str  # "float", "int", "bool", "string" or "unsupported".
  low: int = 0  # Ints: allowed range. Floats: +-max exact integer.
  high: int = 0
  max_value: float = 0.0  # Floats: largest finite magnitude.


def _float_target(name: str, dtype: np.dtype) -> _Target:
  info = np.finfo(dtype) if dtype != _BFLOAT16 else ml_dtypes.finfo(dtype)
  exact = (1 << (info.nmant + 1)) - 1
  return _Target(name, dtype, "float", -exact, exact, float(info.max))


def _int_target(name: str, dtype: np.dtype) -> _Target:
  info = np.iinfo(dtype)
  return _Target(name, dtype, "int", int(info.min), int(info.max))


def _build_targets() -> dict[int, _Target]:
  targets = {
      1: _float_target("float", np.dtype(np.float32)),
      2: _float_target("double", np.dtype(np.float64)),
      3: _int_target("int32", np.dtype(np.int32)),
      4: _int_target("uint8", np.dtype(np.uint8)),
      5: _int_target("int16", np.dtype(np.int16)),
      6: _int_target("int8", np.dtype(np.int8)),
      7: _Target("string", np.dtype(object), "string"),
      9: _int_target("int64", np.dtype(np.int64)),
      10: _Target("bool", np.dtype(np.bool_), "bool"),
      17: _int_target("uint16", np.dtype(np.uint16)),
      19: _float_target("half", np.dtype(np.float16)),
      22: _int_target("uint32", np.dtype(np.uint32)),
      23: _int_target("uint64", np.dtype(np.uint64)),
  }
  if _BFLOAT16 is not None:
    targets[14] = _float_target("bfloat16", _BFLOAT16)
  return targets


_TARGETS = _build_targets()
_TARGET_BY_DTYPE = {t.dtype: t for t in _TARGETS.values()}
_UNSUPPORTED_NAMES = {
    0: "invalid",
    8: "complex64",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    15: "qint16",
    16: "quint16",
    18: "complex128",
    20: "resource",
    21: "variant",
}


@functools.lru_cache(maxsize=256)
def _target_for(dtype: Any) -> _Target:
  if isinstance(dtype, int) and not isinstance(dtype, bool):
    target = _TARGETS.get(dtype)
    if target is None:
      name = _UNSUPPORTED_NAMES.get(dtype, f"dtype enum {dtype}")
      return _Target(name, None, "unsupported")
    return target
  enum = getattr(dtype, "as_datatype_enum", None)  # A tf.DType.
  if enum is not None:
    return _target_for(int(enum))
  np_dtype = np.dtype(dtype)
  if np_dtype.kind in "OSU":
    return _TARGETS[7]
  target = _TARGET_BY_DTYPE.get(np_dtype)
  if target is None:
    return _Target(str(np_dtype), None, "unsupported")
  return target


def _target(spec: Any) -> _Target:
  dtype = spec.dtype
  try:
    return _target_for(dtype)
  except TypeError:  # Unhashable dtype-like; rare.
    return _target_for.__wrapped__(dtype)


# -- JSON text helpers ---------------------------------------------------------


def _json_type(value: Any) -> str:
  """rapidjson's type names, as upstream's messages use them."""
  if value is None:
    return "Null"
  if value is True:
    return "True"
  if value is False:
    return "False"
  if isinstance(value, dict):
    return "Object"
  if isinstance(value, list):
    return "Array"
  if isinstance(value, str):
    return "String"
  return "Number"


def _json_str(value: Any) -> str:
  """A JSON value for an error message, pretty-printed like rapidjson."""
  if isinstance(value, float):
    return _float_str(value)
  try:
    return json.dumps(value, indent=4, ensure_ascii=False)
  except (TypeError, ValueError, RecursionError):
    return "<unprintable value>"


def _float_str(value: float) -> str:
  if math.isnan(value):
    return "NaN"
  if math.isinf(value):
    return "Infinity" if value > 0 else "-Infinity"
  return repr(value)


def _shape_str(shape: Sequence[int]) -> str:
  return "[" + ",".join(str(d) for d in shape) + "]"


def _status_str(error: ServingError) -> str:
  """absl::Status::ToString(), which upstream embeds in wrapped errors."""
  return f"{error.code.name}: {error.message}"


def _is_b64_object(value: Any) -> bool:
  return (
      isinstance(value, dict)
      and len(value) == 1
      and isinstance(value.get(_B64_KEY), str)
  )


def _b64_decode(value: dict[str, Any]) -> bytes:
  if not _is_b64_object(value):
    raise status.invalid_argument(
        f"JSON Value: {_json_str(value)} not formatted correctly for base64 "
        "data"
    )
  text = value[_B64_KEY]
  # absl::Base64Unescape: standard alphabet, padding optional.
  if len(text) % 4:
    text += "=" * (-len(text) % 4)
  try:
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
  except (binascii.Error, UnicodeEncodeError, ValueError):
    raise status.invalid_argument("Unable to base64 decode") from None


# -- Request body --------------------------------------------------------------


def decode_json_body(body: bytes | str) -> JsonDocument:
  """Parses a request body, which must be a JSON object.

  NaN, Infinity and -Infinity are accepted, as upstream's rapidjson parser
  (kParseNanAndInfFlag) does.
  """
  if not body:
    raise status.invalid_argument("JSON Parse error: The document is empty")
  try:
    doc = orjson.loads(body)
  except orjson.JSONDecodeError as orjson_error:
    try:
      doc = json.loads(body)  # Knows NaN/Infinity; orjson does not.
    except (ValueError, RecursionError):
      if not body.strip():
        raise status.invalid_argument(
            "JSON Parse error: The document is empty. at offset: "
            f"{len(body)}"
        ) from None
      raise status.invalid_argument(
          f"JSON Parse error: {orjson_error.msg} at offset: "
          f"{orjson_error.pos}"
      ) from None
  if not isinstance(doc, dict):
    raise status.invalid_argument(f"JSON Value: {_json_str(doc)} Is not object")
  return JsonDocument(doc, body)


def get_signature_name(doc: Mapping[str, Any]) -> str:
  """The optional "signature_name" ("" when absent)."""
  if "signature_name" not in doc:
    return ""
  name = doc["signature_name"]
  if not isinstance(name, str):
    raise status.invalid_argument(
        f"JSON Value: {_json_str(doc)} not formatted correctly. "
        "'signature_name' key must be a string value."
    )
  return name


def parse_predict_request(
    body: bytes | str,
    input_specs: (
        Mapping[str, TensorSpecLike]
        | Callable[[str], Mapping[str, TensorSpecLike]]
    ),
) -> PredictJsonRequest:
  """Parses a predict body in one go.

  `input_specs` may be a callable from signature name to specs, since the
  signature is only known once the body is parsed.
  """
  doc = decode_json_body(body)
  signature_name = get_signature_name(doc)
  specs = input_specs(signature_name) if callable(input_specs) else input_specs
  inputs, request_format = parse_predict_inputs(doc, specs)
  return PredictJsonRequest(signature_name, inputs, request_format)


def parse_predict_inputs(
    doc: Mapping[str, Any],
    input_specs: Mapping[str, TensorSpecLike],
    validate_shapes: bool = False,
) -> tuple[dict[str, np.ndarray], RequestFormat]:
  """Converts "instances" (row) or "inputs" (columnar) into named arrays.

  With `validate_shapes`, each tensor must also be compatible with its
  spec's shape (upstream leaves that to the model, whose error is vaguer).
  """
  if not input_specs:
    signature_name = get_signature_name(doc)
    raise status.invalid_argument(
        "Failed to get input map for signature: "
        f"{signature_name or 'DEFAULT'}"
    )
  targets = {name: _target(spec) for name, spec in input_specs.items()}

  def may_contain_bools() -> bool:
    return getattr(doc, "may_contain_bools", True)

  has_instances = "instances" in doc
  if has_instances and "inputs" in doc:
    raise status.invalid_argument(
        f"JSON Value: {_json_str(doc)} Not formatted correctly expecting only "
        "one of 'inputs' or 'instances' keys to exist "
    )
  if has_instances:
    instances = doc["instances"]
    if not isinstance(instances, list):
      raise status.invalid_argument(
          f"JSON Value: {_json_str(doc)} Excepting 'instances' to be an "
          "list/array"
      )
    if not instances:
      raise status.invalid_argument(
          f"JSON Value: {_json_str(doc)} No values in 'instances' array"
      )
    tensors = _parse_rows(instances, targets, may_contain_bools)
    request_format = ROW
  elif "inputs" in doc:
    tensors = _parse_columns(doc["inputs"], targets, may_contain_bools)
    request_format = COLUMNAR
  else:
    raise status.invalid_argument("Missing 'inputs' or 'instances' key")
  if validate_shapes:
    for name, tensor in tensors.items():
      _check_shape(name, tensor.shape, input_specs[name].shape)
  return tensors, request_format


# -- Fast path for the common predict body -------------------------------------

_SIMPLE_KEYS = (
    frozenset(("instances",)),
    frozenset(("inputs",)),
    frozenset(("signature_name", "instances")),
    frozenset(("signature_name", "inputs")),
)
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_parsers = threading.local()


class SimplePredict(NamedTuple):
  """A predict body holding one plain numeric tensor, parsed without objects.

  `values` are the tensor's numbers as float64, already checked to be
  numbers (no bools, strings or nulls), rectangular, and small enough to be
  exact in float32.
  """

  signature_name: str
  request_format: RequestFormat
  values: np.ndarray


def parse_simple_predict(body: bytes) -> SimplePredict | None:
  """The common body `{"instances"|"inputs": [[numbers...], ...]}`, or None.

  orjson plus np.array builds and then reads back one Python float per
  element: ~75 us for one MNIST image here, a third of a batched REST
  request's CPU. simdjson hands a numeric array over as one buffer of
  doubles instead (~18 us). Anything else (objects per row, more than 2
  dimensions, ragged rows, non-numbers, NaN, duplicate keys, huge values)
  returns None and takes the general path, whose results and errors this
  never changes.
  """
  parser = getattr(_parsers, "parser", None)
  if parser is None:
    parser = _parsers.parser = simdjson.Parser()
  try:
    return _simple_predict(parser, body)
  except (ValueError, TypeError, KeyError, IndexError):
    return None
  except RuntimeError:
    # Objects from a failed parse still pinned the parser; start afresh.
    _parsers.parser = simdjson.Parser()
    return None


def _simple_predict(parser: Any, body: bytes) -> SimplePredict | None:
  doc = parser.parse(body)
  if not isinstance(doc, simdjson.Object):
    return None
  keys = list(doc.keys())
  if len(keys) != len(set(keys)) or frozenset(keys) not in _SIMPLE_KEYS:
    return None
  signature_name = ""
  if "signature_name" in keys:
    signature_name = doc["signature_name"]
    if not isinstance(signature_name, str):
      return None
  request_format = ROW if "instances" in keys else COLUMNAR
  tensor = doc["instances" if request_format == ROW else "inputs"]
  if not isinstance(tensor, simdjson.Array) or not len(tensor):
    return None
  shape: tuple[int, ...] = (len(tensor),)
  first = tensor[0]
  if isinstance(first, simdjson.Array):
    width = len(first)
    if not width:
      return None
    for row in tensor:
      if not isinstance(row, simdjson.Array) or len(row) != width:
        return None
    shape += (width,)
  values = np.frombuffer(tensor.as_buffer(of_type="d"), dtype=np.float64)
  # as_buffer flattens nested arrays, and `[[1, 2], [[3], 4]]` flattens to
  # as many numbers as a 2 x 2 tensor. Only numbers and at most these
  # brackets remain once as_buffer succeeded, so counting them rules nesting
  # out (the only string, signature_name, may hold brackets of its own).
  brackets = 1 + shape[0] if len(shape) == 2 else 1
  if values.size != math.prod(shape) or body.count(
      b"["
  ) != brackets + signature_name.count("["):
    return None
  # Integers past float32's exact range keep the general path's checks.
  if not np.abs(values).max() <= _TARGETS[1].high:
    return None
  return SimplePredict(signature_name, request_format, values.reshape(shape))


def simple_predict_inputs(
    simple: SimplePredict, input_specs: Mapping[str, TensorSpecLike]
) -> dict[str, np.ndarray] | None:
  """The inputs for a one-input float signature, else None (general path)."""
  if len(input_specs) != 1:
    return None
  ((name, spec),) = input_specs.items()
  target = _target(spec)
  if target.dtype not in _FAST_DTYPES:
    return None
  return {name: simple.values.astype(target.dtype)}


def _check_shape(
    name: str, shape: tuple[int, ...], expected: Sequence[int] | None
) -> None:
  if expected is None:
    return
  expected = list(expected)
  if len(shape) != len(expected) or any(
      e >= 0 and e != d for d, e in zip(shape, expected)
  ):
    raise status.invalid_argument(
        f"Input: {name} has shape {_shape_str(shape)} but the signature "
        f"expects {_shape_str(expected)} (-1: any size)"
    )


# -- Value conversion ----------------------------------------------------------


def _may_hide_bools(
    value: Any, arr: np.ndarray, may_contain_bools: Callable[[], bool]
) -> bool:
  """Whether `arr` = np.array(value) may have come from a bool somewhere."""
  if not ((arr == 0) | (arr == 1)).any():
    return False  # A bool would have become 0 or 1.
  if not may_contain_bools():
    return False
  flat = value  # Non-ragged, so arr.ndim levels deep; no Python-level loop.
  for _ in range(arr.ndim - 1):
    flat = itertools.chain.from_iterable(flat)
  return bool in set(map(type, flat if arr.ndim else [value]))


def _fast_numeric(
    value: Any, target: _Target, may_contain_bools: Callable[[], bool]
) -> np.ndarray | None:
  """np.array() conversion, or None when only the exact path can tell."""
  if target.kind not in ("float", "int", "bool"):
    return None
  try:
    arr = np.array(value)
  except (ValueError, OverflowError, TypeError):
    return None  # Ragged, or ints beyond 64 bits mixed with others.
  kind = arr.dtype.kind
  if target.kind == "bool":
    return arr if kind == "b" else None
  if kind not in "iuf":
    return None  # Strings, None, objects or bools.
  if arr.size == 0:
    return arr.astype(target.dtype)
  if _may_hide_bools(value, arr, may_contain_bools):
    return None
  if target.kind == "int":
    if kind == "f" or arr.min() < target.low or arr.max() > target.high:
      return None
    return arr.astype(target.dtype)
  if kind in "iu":
    if arr.min() < target.low or arr.max() > target.high:
      return None  # Not exactly representable.
  elif target.dtype != np.float64:
    # `not <=` so that NaN (which hides the true max) gets a closer look.
    if not np.abs(arr).max() <= target.max_value:
      too_big = np.abs(arr) > target.max_value
      too_big &= np.isfinite(arr)
      if too_big.any():
        return None
  return arr.astype(target.dtype, copy=False)


def _type_error(value: Any, target: _Target) -> ServingError:
  return status.invalid_argument(
      f"JSON Value: {_json_str(value)} Type: {_json_type(value)} is not of "
      f"expected type: {target.name}"
  )


def _convert_leaf(value: Any, target: _Target) -> Any:
  """One JSON scalar (or b64 object) as a Python value of the target kind."""
  kind = target.kind
  if isinstance(value, dict):
    if kind == "string":
      return _b64_decode(value)
    raise _type_error(value, target)
  if kind == "string":
    if isinstance(value, str):
      return value.encode("utf-8", "surrogatepass")
    raise _type_error(value, target)
  if kind == "bool":
    if isinstance(value, bool):
      return value
    raise _type_error(value, target)
  if kind == "int":
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and target.low <= value <= target.high
    ):
      return value
    raise _type_error(value, target)
  if kind == "float":
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise _type_error(value, target)
    if isinstance(value, int) and _INT64_MIN <= value <= _UINT64_MAX:
      lossless = target.low <= value <= target.high
    else:  # A decimal; JSON ints beyond 64 bits also parse as doubles.
      value = float(value)
      lossless = not math.isfinite(value) or abs(value) <= target.max_value
    if not lossless:
      raise status.invalid_argument(
          f"Cannot convert JSON value: {_json_str(value)} to {target.name} "
          "without loss of precision."
      )
    return value
  raise status.unimplemented(
      f"Conversion of JSON Value: {_json_str(value)} to type: {target.name}"
  )


def _dense_shape(value: Any) -> list[int]:
  """The shape implied by following first elements (upstream's rule)."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _exact_values(
    value: Any, target: _Target, name: str, where: str
) -> tuple[list[Any], list[int]]:
  """Flattens and converts a value the way upstream walks it.

  Raises upstream's messages, suffixed with which input and where.
  """
  shape = _dense_shape(value)
  rank = len(shape)
  if rank > _MAX_RANK:
    raise status.invalid_argument(
        f"Input: {name} has {rank} dimensions; at most {_MAX_RANK} are "
        "supported"
    )
  flat: list[Any] = []
  path: list[int] = []

  def context() -> str:
    index = "".join(f"[{i}]" for i in path)
    return (
        f" (input: {name}, at: {where}{index}, expected shape: "
        f"{_shape_str(shape)})"
    )

  def walk(item: Any, level: int) -> None:
    if not isinstance(item, list):
      if level != rank:
        raise status.invalid_argument(
            f"JSON Value: {_json_str(item)} found at incorrect level: "
            f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            + context()
        )
      flat.append(_convert_leaf(item, target))
      return
    if level >= rank:
      raise status.invalid_argument(
          f"Encountered list at unexpected level: {level} expected < {rank}"
          + context()
      )
    if len(item) != shape[level]:
      raise status.invalid_argument(
          f"Encountered list at unexpected size: {len(item)} at level: "
          f"{level} expected size: {shape[level]}" + context()
      )
    path.append(0)
    for i, element in enumerate(item):
      path[-1] = i
      walk(element, level + 1)
    path.pop()

  try:
    walk(value, 0)
  except RecursionError:
    raise status.invalid_argument(
        f"JSON value nested too deeply for input: {name}"
    ) from None
  return flat, shape


def _to_array(
    flat: list[Any], shape: Sequence[int], target: _Target
) -> np.ndarray:
  if target.kind == "string":
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)
  return np.array(flat, dtype=target.dtype).reshape(shape)


def _convert_value(
    value: Any,
    target: _Target,
    name: str,
    where: str,
    may_contain_bools: Callable[[], bool],
) -> np.ndarray:
  arr = _fast_numeric(value, target, may_contain_bools)
  if arr is not None:
    return arr
  flat, shape = _exact_values(value, target, name, where)
  return _to_array(flat, shape, target)


def _parse_columns(
    inputs: Any,
    targets: dict[str, _Target],
    may_contain_bools: Callable[[], bool],
) -> dict[str, np.ndarray]:
  if not isinstance(inputs, dict) or _is_b64_object(inputs):
    if len(targets) > 1:
      raise status.invalid_argument(
          "inputs is a plain value/list, but expecting an object as multiple "
          "input tensors required as per tensorinfo_map"
      )
    ((name, target),) = targets.items()
    return {
        name: _convert_value(inputs, target, name, "inputs", may_contain_bools)
    }
  tensors = {}
  for name in sorted(targets):
    if name not in inputs:
      raise status.invalid_argument(
          f"Missing named input: {name} in 'inputs' object."
      )
    tensors[name] = _convert_value(
        inputs[name],
        targets[name],
        name,
        f'inputs["{name}"]',
        may_contain_bools,
    )
  return tensors


def _is_element_object(value: Any) -> bool:
  return isinstance(value, dict) and not _is_b64_object(value)


def _parse_rows(
    instances: list[Any],
    targets: dict[str, _Target],
    may_contain_bools: Callable[[], bool],
) -> dict[str, np.ndarray]:
  if not _is_element_object(instances[0]) and len(targets) > 1:
    raise status.invalid_argument(
        "instances is a plain list, but expecting list of objects as multiple "
        "input tensors required as per tensorinfo_map"
    )
  objects = _is_element_object(instances[0])
  tensors = _fast_rows(instances, targets, objects, may_contain_bools)
  if tensors is None:
    tensors = _exact_rows(instances, targets, objects)
  return tensors


def _fast_rows(
    instances: list[Any],
    targets: dict[str, _Target],
    objects: bool,
    may_contain_bools: Callable[[], bool],
) -> dict[str, np.ndarray] | None:
  """Stacks rows with np.array; None sends the request to the exact path."""
  if not objects:
    ((name, target),) = targets.items()
    arr = _fast_numeric(instances, target, may_contain_bools)
    return None if arr is None else {name: arr}
  names = targets.keys()
  for row in instances:
    if not isinstance(row, dict) or row.keys() != names or _is_b64_object(row):
      return None
  tensors = {}
  for name, target in targets.items():
    arr = _fast_numeric(
        [row[name] for row in instances], target, may_contain_bools
    )
    if arr is None:
      return None
    tensors[name] = arr
  return tensors


class _RowStack:
  """Collects one input's rows, checking they all share size and shape."""

  def __init__(self, target: _Target):
    self.target = target
    self.flat: list[Any] = []
    self.shape: list[int] | None = None
    self.size = 0
    self.rows = 0

  def add(self, values: list[Any], shape: list[int]) -> None:
    if len(shape) >= _MAX_RANK:
      raise status.invalid_argument(
          f"Rows have {len(shape)} dimensions; at most {_MAX_RANK - 1} are "
          "supported, as the batch adds one"
      )
    if self.shape is None:
      self.shape, self.size = shape, len(values)
    elif len(values) != self.size:
      raise status.invalid_argument(
          f"Expecting tensor size: {self.size} but got: {len(values)}"
      )
    elif shape != self.shape:
      raise status.invalid_argument(
          f"Expecting shape {_shape_str(self.shape)} but got: "
          f"{_shape_str(shape)}"
      )
    self.flat.extend(values)
    self.rows += 1

  def array(self) -> np.ndarray:
    return _to_array(self.flat, [self.rows] + (self.shape or []), self.target)


def _exact_rows(
    instances: list[Any], targets: dict[str, _Target], objects: bool
) -> dict[str, np.ndarray]:
  """Upstream's row-by-row walk, with its exact error messages."""
  stacks = {name: _RowStack(target) for name, target in targets.items()}
  expected_keys = ",".join(sorted(targets))
  for i, row in enumerate(instances):
    if objects:
      if not _is_element_object(row):
        raise status.invalid_argument(
            f"Expecting object but got list at item {i} of input list"
        )
      for key, value in row.items():
        try:
          if key not in targets:
            raise status.invalid_argument(
                f"JSON object: does not have named input: {key}"
            )
          stacks[key].add(
              *_exact_values(
                  value, targets[key], key, f'instances[{i}]["{key}"]'
              )
          )
        except ServingError as e:
          raise status.invalid_argument(
              f"Failed to process element: {i} key: {key} of 'instances' "
              f"list. Error: {_status_str(e)}"
          ) from None
      if row.keys() != targets.keys():
        raise status.invalid_argument(
            f"Failed to process element: {i} of 'instances' list. JSON "
            f"object: {_json_str(row)} keys must be equal to: {expected_keys}"
        )
    else:
      if _is_element_object(row):
        raise status.invalid_argument(
            f"Expecting value/list but got object at item {i} of input list"
        )
      ((name, target),) = targets.items()
      try:
        stacks[name].add(*_exact_values(row, target, name, f"instances[{i}]"))
      except ServingError as e:
        raise status.invalid_argument(
            f"Failed to process element: {i} of 'instances' list. Error: "
            f"{_status_str(e)}"
        ) from None
  return {name: stack.array() for name, stack in stacks.items()}


# -- Responses -----------------------------------------------------------------


def _nonfinite_fragment(arr: np.ndarray) -> orjson.Fragment:
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
  if _BFLOAT16 is not None and arr.dtype == _BFLOAT16:
    arr = arr.astype(np.float32)  # Exact.
  elif not arr.dtype.isnative:
    arr = arr.astype(arr.dtype.newbyteorder("="))
  if not arr.flags.c_contiguous:
    arr = arr.copy(order="C")  # Not ascontiguousarray: it makes 0-d 1-d.
  return arr


def _b64_json(value: bytes | str) -> dict[str, str]:
  if isinstance(value, str):
    value = value.encode("utf-8", "surrogatepass")
  return {_B64_KEY: base64.b64encode(value).decode("ascii")}


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
    as_b64 = name.endswith(_BYTES_SUFFIX)
    if kind == "U" and not as_b64:
      return arr.tolist()
    return _strings_json(arr, as_b64)
  if kind == "c" or (kind not in "biuf" and arr.dtype != _BFLOAT16):
    raise status.invalid_argument(
        f"Failed to write JSON value for tensor type: {_dtype_name(arr.dtype)}"
    )
  arr = _prepare_numeric(arr)
  if arr.dtype.kind == "f" and not np.isfinite(arr).all():
    return _nonfinite_fragment(arr)
  return arr[()] if arr.ndim == 0 else arr  # orjson takes scalars, not 0-d.


def _row_values(name: str, arr: np.ndarray) -> list[Any]:
  """Per-row JSON values of a batched tensor."""
  value = _tensor_json(name, arr)
  if isinstance(value, orjson.Fragment):
    arr = _prepare_numeric(np.asarray(arr))
    return [_tensor_json(name, row) for row in arr]
  return list(value)


def _dtype_name(dtype: np.dtype) -> str:
  target = _TARGET_BY_DTYPE.get(dtype)
  return target.name if target is not None else dtype.name


def format_predict_response(
    outputs: Mapping[str, np.ndarray], request_format: RequestFormat
) -> bytes:
  """The predict response body: {"predictions": ...} or {"outputs": ...}."""
  if not outputs:
    raise status.invalid_argument("Cannot convert empty tensor map to JSON")
  names = sorted(outputs)
  if request_format == ROW:
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
  elif request_format == COLUMNAR:
    if len(names) == 1:
      body = {"outputs": _tensor_json(names[0], outputs[names[0]])}
    else:
      body = {
          "outputs": {name: _tensor_json(name, outputs[name]) for name in names}
      }
  else:
    raise status.invalid_argument("Invalid request format")
  return orjson.dumps(body, option=_NUMPY_OPTION)


def format_error(message: str) -> bytes:
  """Upstream's error body: { "error": "<message>" }."""
  try:
    text = orjson.dumps(message)
  except TypeError:  # Lone surrogates; the stdlib escapes them.
    text = json.dumps(message).encode("ascii")
  return b'{ "error": ' + text + b" }"


def _float32_json(values: np.ndarray) -> Any:
  """float32 values, written shortest-round-trip, NaN/Inf as tokens."""
  values = np.asarray(values, dtype=np.float32)
  if not np.isfinite(values).all():
    return _nonfinite_fragment(values)
  return values[()] if values.ndim == 0 else values


def format_classify_response(classifications: Any) -> bytes:
  """{"results": [[[label, score], ...], ...]}.

  Takes a ClassificationResult proto (or anything with `.classifications`)
  or a sequence, per example, of (label, score) pairs.
  """
  per_example = getattr(classifications, "classifications", classifications)
  results = []
  for classes in per_example:
    classes = getattr(classes, "classes", classes)
    labels, scores = [], []
    for item in classes:
      if isinstance(item, (tuple, list)):
        label, score = item
      else:
        label, score = item.label, item.score
      if isinstance(label, bytes):
        label = label.decode("utf-8", "replace")
      labels.append(label)
      scores.append(score)
    score_json = _float32_json(np.array(scores, dtype=np.float32))
    if isinstance(score_json, orjson.Fragment):
      score_json = [_float32_json(np.float32(s)) for s in scores]
    results.append([list(pair) for pair in zip(labels, score_json)])
  if not results:
    raise status.invalid_argument(
        "Cannot convert empty ClassificationResults to JSON"
    )
  return orjson.dumps({"results": results}, option=_NUMPY_OPTION)


def format_regress_response(values: Any) -> bytes:
  """{"results": [v1, v2, ...]} from a RegressionResult proto or floats."""
  regressions = getattr(values, "regressions", None)
  if regressions is not None:
    values = [r.value for r in regressions]
  values = np.asarray(values, dtype=np.float32).ravel()
  if values.size == 0:
    raise status.invalid_argument(
        "Cannot convert empty RegressionResults to JSON"
    )
  return orjson.dumps({"results": _float32_json(values)}, option=_NUMPY_OPTION)


# -- Classify / regress requests -----------------------------------------------

# tf.Example wire format (tensorflow/core/example/{example,feature}.proto) and
# tensorflow.serving.Input (apis/input.proto) field numbers.
_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = "bytes", "float", "int64"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _feature_error(name: str, value: Any) -> ServingError:
  return status.invalid_argument(
      f"Feature: {name} has element with unexpected JSON type: "
      f"{_json_type(value)}"
  )


def _feature_values(name: str, content: Any) -> tuple[str | None, list[Any]]:
  """(kind, values) of one feature, with upstream's type rules."""
  kind: str | None = None
  values: list[Any] = []
  items = content if isinstance(content, list) else [content]
  for value in items:
    if value is None or isinstance(value, list):
      raise _feature_error(name, value)
    if isinstance(value, bool):
      this_kind, value = _INT64_LIST, int(value)
    elif isinstance(value, dict):
      if not _is_b64_object(value):
        raise _feature_error(name, value)
      this_kind = _BYTES_LIST
    elif isinstance(value, str):
      this_kind, value = _BYTES_LIST, value.encode("utf-8", "surrogatepass")
    elif (
        isinstance(value, int)
        and value <= _UINT64_MAX
        and (value >= _INT64_MIN)
    ):
      this_kind = _INT64_LIST
    else:  # Decimals, and integers too big for 64 bits (doubles upstream).
      this_kind, value = _FLOAT_LIST, float(value)
    if kind is not None and kind != this_kind:
      raise status.invalid_argument(
          f"Unexpected element type in feature: {name} expecting type: {kind}"
      )
    kind = this_kind
    if isinstance(value, dict):
      value = _b64_decode(value)
    elif kind == _INT64_LIST and value > _INT64_MAX:
      raise status.invalid_argument(
          f"Feature: {name} has uint64 element. Only int64 is supported."
      )
    elif (
        kind == _FLOAT_LIST
        and math.isfinite(value)
        and abs(value) > _FLOAT32_MAX
    ):
      raise status.invalid_argument(
          f"Cannot convert JSON value: {_json_str(value)} to float without "
          "loss of precision."
      )
    values.append(value)
  return kind, values


@functools.cache
def _example_class():
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

  return example_pb2.Example


def _make_example(value: Any) -> bytes:
  """A serialized tf.Example from a JSON object of features."""
  if not isinstance(value, dict):
    raise status.invalid_argument(
        f"Example must be JSON object but got JSON {_json_type(value)}"
    )
  example = _example_class()()
  features = example.features.feature
  for name, content in value.items():
    kind, values = _feature_values(name, content)
    feature = features[name]
    if kind == _INT64_LIST:
      feature.int64_list.value.extend(values)
    elif kind == _FLOAT_LIST:
      feature.float_list.value.extend(values)
    elif kind == _BYTES_LIST:
      feature.bytes_list.value.extend(values)
  return example.SerializeToString()


def parse_example_request(doc: Mapping[str, Any]) -> ExampleRequest:
  """Parses a classify/regress body into serialized tf.Examples.

  `context` (if present) is returned separately: upstream merges it into
  each example only when running the model.
  """
  signature_name = get_signature_name(doc)
  context = None
  if "context" in doc:
    context = _make_example(doc["context"])
  if "examples" not in doc:
    raise status.invalid_argument(
        f"JSON Value: {_json_str(doc)} When method is classify, key "
        "'examples' is expected and was not found"
    )
  examples = doc["examples"]
  if not isinstance(examples, list):
    raise status.invalid_argument(
        f"JSON Value: {_json_str(doc)} Expecting 'examples' value to be an "
        "list/array"
    )
  if not examples:
    raise status.invalid_argument(
        f"JSON Value: {_json_str(doc)} 'examples' value is an empty array"
    )
  return ExampleRequest(
      signature_name, context, [_make_example(e) for e in examples]
  )


def _len_delimited(field_number: int, payload: bytes) -> bytes:
  length = len(payload)
  header = bytearray([(field_number << 3) | 2])
  while length >= 0x80:
    header.append((length & 0x7F) | 0x80)
    length >>= 7
  header.append(length)
  return bytes(header) + payload


def input_proto_bytes(request: ExampleRequest) -> bytes:
  """A serialized tensorflow.serving.Input holding the request's examples.

  `example_list_with_context` when there is a context, else `example_list`;
  parse it with `input_pb2.Input.FromString` or into `request.input`.
  """
  body = b"".join(_len_delimited(1, e) for e in request.examples)
  if request.context is not None:
    body += _len_delimited(2, request.context)
    return _len_delimited(2, body)
  return _len_delimited(1, body)
