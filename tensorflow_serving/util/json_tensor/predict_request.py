"""Predict request bodies: JSON rows or columns to numpy, by signature.

`decode_predict(body, lookup)` is the one entry: it parses the body, asks
`lookup` for the signature the body names, and converts its inputs. Numeric
bodies of the common shape take a simdjson fast path straight into a buffer
of doubles; everything else (and every error) takes the general path, which
converts with `np.array` where it can and re-walks a value the way upstream
does whenever it has any doubt, so errors carry upstream's messages.

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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import itertools
import math
import threading
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import simdjson

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import squeeze
from tensorflow_serving.util.json_tensor import targets as targets_lib

ROW = "row"
COLUMNAR = "columnar"
RequestFormat = Literal["row", "columnar"]
_MAX_RANK = 64  # numpy's limit on dimensions.


class TensorSpecLike(Protocol):
  """What parsing needs from a signature input: its dtype and shape.

  `dtype` is a numpy dtype (object for strings), a TF DataType enum int, or a
  tf.DType; `shape` is a list of ints (-1 unknown) or None (unknown rank).
  """

  dtype: Any
  shape: Sequence[int] | None


class SignatureLike(Protocol):
  """What `decode_predict` needs of the signature a body names."""

  @property
  def inputs(self) -> Mapping[str, TensorSpecLike]:
    ...


@dataclasses.dataclass(frozen=True, slots=True)
class DecodedPredict:
  """A predict body as numpy, with the signature and format it used."""

  sig: Any  # What `lookup` returned.
  inputs: dict[str, np.ndarray]
  request_format: RequestFormat
  output_filter: tuple[str, ...] = ()


def decode_predict(
    body: bytes | bytearray, lookup: Callable[[str], SignatureLike]
) -> DecodedPredict:
  """Parses a predict body against the signature it names.

  `lookup(signature_name)` ("" for the default) returns the signature, or
  raises (e.g. NOT_FOUND for the model, INVALID_ARGUMENT for the name); it
  is called once the body is known to be JSON, as upstream calls its
  GetInfoMap callback.
  """
  document.check_not_blank(body)
  original_offset = None
  squeezed = squeeze.squeeze(body)
  if squeezed is not None:
    body, original_offset = squeezed.body, squeezed.original_offset
  simple = parse_simple_predict(body)
  if simple is not None:
    sig = lookup(simple.signature_name)
    inputs = simple_predict_inputs(simple, sig.inputs)
    if inputs is not None:
      return DecodedPredict(sig, inputs, simple.request_format)
  doc = document.decode_json_body(body, original_offset, squeeze_first=False)
  sig = lookup(document.get_signature_name(doc))
  inputs, request_format = parse_predict_inputs(doc, sig.inputs)
  return DecodedPredict(sig, inputs, request_format)


def parse_predict_inputs(
    doc: Mapping[str, Any],
    input_specs: Mapping[str, TensorSpecLike],
) -> tuple[dict[str, np.ndarray], RequestFormat]:
  """Converts "instances" (row) or "inputs" (columnar) into named arrays.

  Shapes are not checked against the specs: upstream feeds what arrives and
  leaves it to the model's ops.
  """
  if not input_specs:
    signature_name = document.get_signature_name(doc)
    raise status.invalid_argument(
        "Failed to get input map for signature: "
        f"{signature_name or 'DEFAULT'}"
    )
  targets = {
      name: targets_lib.target_for_spec(spec)
      for name, spec in input_specs.items()
  }

  def may_contain_bools() -> bool:
    return getattr(doc, "may_contain_bools", True)

  has_instances = "instances" in doc
  if has_instances and "inputs" in doc:
    raise status.invalid_argument(
        f"JSON Value: {document.json_str(doc)} Not formatted correctly expecting only "
        "one of 'inputs' or 'instances' keys to exist "
    )
  if has_instances:
    instances = doc["instances"]
    if not isinstance(instances, list):
      raise status.invalid_argument(
          f"JSON Value: {document.json_str(doc)} Excepting 'instances' to be an "
          "list/array"
      )
    if not instances:
      raise status.invalid_argument(
          f"JSON Value: {document.json_str(doc)} No values in 'instances' array"
      )
    tensors = _parse_rows(instances, targets, may_contain_bools)
    request_format = ROW
  elif "inputs" in doc:
    tensors = _parse_columns(doc["inputs"], targets, may_contain_bools)
    request_format = COLUMNAR
  else:
    raise status.invalid_argument("Missing 'inputs' or 'instances' key")
  return tensors, request_format


# -- Fast path for the common predict body ------------------------------------

_SIMPLE_KEYS = (
    frozenset(("instances",)),
    frozenset(("inputs",)),
    frozenset(("signature_name", "instances")),
    frozenset(("signature_name", "inputs")),
)
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_parsers = threading.local()
_KEEP_PARSER_MAX_BYTES = 16 << 20


class SimplePredict(NamedTuple):
  """A predict body holding one plain numeric tensor, parsed without objects.

  `values` are the tensor's numbers as float64, already checked to be
  numbers (no bools, strings or nulls), rectangular, and small enough to be
  exact in float32.
  """

  signature_name: str
  request_format: RequestFormat
  values: np.ndarray


def parse_simple_predict(body: bytes | bytearray) -> SimplePredict | None:
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
  if parser is None or len(body) > _KEEP_PARSER_MAX_BYTES:
    parser = _parsers.parser = simdjson.Parser()
  try:
    return _simple_predict(parser, body)
  except (ValueError, TypeError, KeyError, IndexError):
    return None
  except RuntimeError:
    # Objects from a failed parse still pinned the parser; start afresh.
    _parsers.parser = None
    return None
  finally:
    if len(body) > _KEEP_PARSER_MAX_BYTES:
      # A parser keeps buffers as large as the largest body it parsed, one
      # per worker thread: past this size they go with the request.
      _parsers.parser = None


def _simple_predict(
    parser: Any, body: bytes | bytearray
) -> SimplePredict | None:
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
  if not np.abs(values).max() <= targets_lib.TARGETS[1].high:
    return None
  return SimplePredict(signature_name, request_format, values.reshape(shape))


def simple_predict_inputs(
    simple: SimplePredict, input_specs: Mapping[str, TensorSpecLike]
) -> dict[str, np.ndarray] | None:
  """The inputs for a one-input float signature, else None (general path)."""
  if len(input_specs) != 1:
    return None
  ((name, spec),) = input_specs.items()
  target = targets_lib.target_for_spec(spec)
  if target.dtype not in _FAST_DTYPES:
    return None
  return {name: simple.values.astype(target.dtype)}


# -- Value conversion ---------------------------------------------------------


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
    value: Any,
    target: targets_lib.Target,
    may_contain_bools: Callable[[], bool],
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


def _type_error(value: Any, target: targets_lib.Target) -> status.ServingError:
  return status.invalid_argument(
      f"JSON Value: {document.json_str(value)} Type: {document.json_type(value)} is not of "
      f"expected type: {target.name}"
  )


def _convert_leaf(value: Any, target: targets_lib.Target) -> Any:
  """One JSON scalar (or b64 object) as a Python value of the target kind."""
  kind = target.kind
  if isinstance(value, dict):
    if kind == "string":
      return document.b64_decode(value)
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
    if (
        isinstance(value, int)
        and document.INT64_MIN <= value <= document.UINT64_MAX
    ):
      lossless = target.low <= value <= target.high
    else:  # A decimal; JSON ints beyond 64 bits also parse as doubles.
      value = float(value)
      lossless = not math.isfinite(value) or abs(value) <= target.max_value
    if not lossless:
      raise status.invalid_argument(
          f"Cannot convert JSON value: {document.json_str(value)} to {target.name} "
          "without loss of precision."
      )
    return value
  raise status.unimplemented(
      f"Conversion of JSON Value: {document.json_str(value)} to type: {target.name}"
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
    value: Any, target: targets_lib.Target, name: str, where: str
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
        f"{document.shape_str(shape)})"
    )

  def walk(item: Any, level: int) -> None:
    if not isinstance(item, list):
      if level != rank:
        raise status.invalid_argument(
            f"JSON Value: {document.json_str(item)} found at incorrect level: "
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
    flat: list[Any], shape: Sequence[int], target: targets_lib.Target
) -> np.ndarray:
  if target.kind == "string":
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr.reshape(shape)
  return np.array(flat, dtype=target.dtype).reshape(shape)


def _convert_value(
    value: Any,
    target: targets_lib.Target,
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
    targets: dict[str, targets_lib.Target],
    may_contain_bools: Callable[[], bool],
) -> dict[str, np.ndarray]:
  if not isinstance(inputs, dict) or document.is_b64_object(inputs):
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
  return isinstance(value, dict) and not document.is_b64_object(value)


def _parse_rows(
    instances: list[Any],
    targets: dict[str, targets_lib.Target],
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
    targets: dict[str, targets_lib.Target],
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
    if (
        not isinstance(row, dict)
        or row.keys() != names
        or document.is_b64_object(row)
    ):
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

  def __init__(self, target: targets_lib.Target):
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
          f"Expecting shape {document.shape_str(self.shape)} but got: "
          f"{document.shape_str(shape)}"
      )
    self.flat.extend(values)
    self.rows += 1

  def array(self) -> np.ndarray:
    return _to_array(self.flat, [self.rows] + (self.shape or []), self.target)


def _exact_rows(
    instances: list[Any], targets: dict[str, targets_lib.Target], objects: bool
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
        except status.ServingError as e:
          raise status.invalid_argument(
              f"Failed to process element: {i} key: {key} of 'instances' "
              f"list. Error: {document.status_str(e)}"
          ) from None
      if row.keys() != targets.keys():
        raise status.invalid_argument(
            f"Failed to process element: {i} of 'instances' list. JSON "
            f"object: {document.json_str(row)} keys must be equal to: {expected_keys}"
        )
    else:
      if _is_element_object(row):
        raise status.invalid_argument(
            f"Expecting value/list but got object at item {i} of input list"
        )
      ((name, target),) = targets.items()
      try:
        stacks[name].add(*_exact_values(row, target, name, f"instances[{i}]"))
      except status.ServingError as e:
        raise status.invalid_argument(
            f"Failed to process element: {i} of 'instances' list. Error: "
            f"{document.status_str(e)}"
        ) from None
  return {name: stack.array() for name, stack in stacks.items()}
