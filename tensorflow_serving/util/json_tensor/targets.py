"""How JSON values convert to each tensor dtype (TF's DataType names)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

try:  # ml_dtypes ships with TensorFlow.
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
  BFLOAT16 = None


@dataclasses.dataclass(frozen=True)
class Target:
  """How JSON values convert to one tensor dtype."""

  name: str  # TF's DataTypeString, used in messages.
  dtype: np.dtype | None  # None: unsupported (UNIMPLEMENTED).
  kind: str  # "float", "int", "bool", "string" or "unsupported".
  low: int = 0  # Ints: allowed range. Floats: +-max exact integer.
  high: int = 0
  max_value: float = 0.0  # Floats: largest finite magnitude.


def _float_target(name: str, dtype: np.dtype) -> Target:
  info = np.finfo(dtype) if dtype != BFLOAT16 else ml_dtypes.finfo(dtype)
  exact = (1 << (info.nmant + 1)) - 1
  return Target(name, dtype, "float", -exact, exact, float(info.max))


def _int_target(name: str, dtype: np.dtype) -> Target:
  info = np.iinfo(dtype)
  return Target(name, dtype, "int", int(info.min), int(info.max))


def _build_targets() -> dict[int, Target]:
  targets = {
      1: _float_target("float", np.dtype(np.float32)),
      2: _float_target("double", np.dtype(np.float64)),
      3: _int_target("int32", np.dtype(np.int32)),
      4: _int_target("uint8", np.dtype(np.uint8)),
      5: _int_target("int16", np.dtype(np.int16)),
      6: _int_target("int8", np.dtype(np.int8)),
      7: Target("string", np.dtype(object), "string"),
      9: _int_target("int64", np.dtype(np.int64)),
      10: Target("bool", np.dtype(np.bool_), "bool"),
      17: _int_target("uint16", np.dtype(np.uint16)),
      19: _float_target("half", np.dtype(np.float16)),
      22: _int_target("uint32", np.dtype(np.uint32)),
      23: _int_target("uint64", np.dtype(np.uint64)),
  }
  if BFLOAT16 is not None:
    targets[14] = _float_target("bfloat16", BFLOAT16)
  return targets


TARGETS = _build_targets()
TARGET_BY_DTYPE = {t.dtype: t for t in TARGETS.values()}
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
def _target_for(dtype: Any) -> Target:
  if isinstance(dtype, int) and not isinstance(dtype, bool):
    target = TARGETS.get(dtype)
    if target is None:
      name = _UNSUPPORTED_NAMES.get(dtype, f"dtype enum {dtype}")
      return Target(name, None, "unsupported")
    return target
  enum = getattr(dtype, "as_datatype_enum", None)  # A tf.DType.
  if enum is not None:
    return _target_for(int(enum))
  np_dtype = np.dtype(dtype)
  if np_dtype.kind in "OSU":
    return TARGETS[7]
  target = TARGET_BY_DTYPE.get(np_dtype)
  if target is None:
    return Target(str(np_dtype), None, "unsupported")
  return target


def target_for_spec(spec: Any) -> Target:
  dtype = spec.dtype
  try:
    return _target_for(dtype)
  except TypeError:  # Unhashable dtype-like; rare.
    return _target_for.__wrapped__(dtype)
