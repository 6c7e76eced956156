"""Typed views of a SignatureDef, used to decode and check requests.

Both transports need a signature's input dtypes and shapes before they can
decode a request (REST JSON carries no dtypes), so they are parsed once at load
time rather than per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
import enum

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tensorflow_serving.util import status

DEFAULT_SERVING_SIGNATURE_DEF_KEY = "serving_default"
# TF2 exports carry this pseudo-signature to run the init op; it is not servable.
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"

PREDICT_METHOD_NAME = "tensorflow/serving/predict"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
REGRESS_METHOD_NAME = "tensorflow/serving/regress"

# DataType enum -> numpy dtype. Strings are numpy object arrays of bytes.
_NP_DTYPES = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
    types_pb2.DT_STRING: np.dtype(np.object_),
    types_pb2.DT_COMPLEX64: np.dtype(np.complex64),
    types_pb2.DT_COMPLEX128: np.dtype(np.complex128),
}


def numpy_dtype(dtype: int) -> np.dtype | None:
  """numpy dtype for a DataType enum value, or None if unsupported."""
  return _NP_DTYPES.get(dtype)


def dtype_short_name(dtype: int) -> str:
  """TF's short name for a DataType (`float`, `string`), as in its errors."""
  name = (
      types_pb2.DataType.Name(dtype)
      if dtype in types_pb2.DataType.values()
      else str(dtype)
  )
  return name[3:].lower() if name.startswith("DT_") else name


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """One signature input or output, keyed by its alias in the signature."""

  alias: str
  tensor_name: str
  tf_dtype: int
  shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dim.

  @property
  def dtype(self) -> np.dtype | None:
    return numpy_dtype(self.tf_dtype)

  @property
  def dtype_name(self) -> str:
    return types_pb2.DataType.Name(self.tf_dtype)

  def check_dtype(self, arr: np.ndarray, index: int) -> None:
    """Raises INVALID_ARGUMENT when `arr`'s dtype cannot feed this tensor.

    The message starts with the words upstream's server returns (TensorFlow's
    own, which clients match on) and then names the input and both types.
    Shapes are not checked here: upstream feeds whatever shape arrives and
    only fails when the graph's ops cannot compute it (see `shape_hint`).
    """
    want = self.dtype
    if want is not None and arr.dtype != want:
      got_name = _dtype_name_of(arr.dtype)
      raise status.invalid_argument(
          f"Expects arg[{index}] to be {dtype_short_name(self.tf_dtype)} but "
          f"{got_name[3:].lower()} is provided (input '{self.alias}': "
          f"expected {self.dtype_name}, received {got_name})"
      )

  def shape_hint(self, arr: np.ndarray) -> str | None:
    """Words for an error TensorFlow raised, when `arr` differs in shape.

    None when the shape fits the signature's declared one (the failure then
    has another cause, and a shape hint would mislead).
    """
    if self.shape is None or _shape_fits(self.shape, arr.shape):
      return None
    return (
        f"input '{self.alias}' has shape {list(arr.shape)}, the signature "
        f"declares {_format_shape(self.shape)}"
    )


def _dtype_name_of(dtype: np.dtype) -> str:
  for tf_dtype, np_dtype in _NP_DTYPES.items():
    if np_dtype == dtype:
      return types_pb2.DataType.Name(tf_dtype)
  if dtype.kind in ("U", "S"):
    return "DT_STRING"
  return f"DT_<{dtype}>"


def _shape_fits(expected: tuple[int, ...], got: tuple[int, ...]) -> bool:
  if len(expected) != len(got):
    return False
  return all(e < 0 or e == g for e, g in zip(expected, got))


def _format_shape(shape: tuple[int, ...]) -> str:
  return "[" + ",".join("?" if d < 0 else str(d) for d in shape) + "]"


@dataclasses.dataclass(frozen=True)
class Signature:
  """A SignatureDef with its inputs and outputs parsed once."""

  key: str
  method_name: str
  inputs: dict[str, TensorSpec]
  outputs: dict[str, TensorSpec]
  # Aliases that have a default in the SignatureDef and may be omitted.
  defaults: frozenset[str]
  proto: meta_graph_pb2.SignatureDef

  @classmethod
  def from_proto(
      cls, key: str, proto: meta_graph_pb2.SignatureDef
  ) -> Signature:
    return cls(
        key=key,
        method_name=proto.method_name,
        inputs={a: _spec(a, t) for a, t in sorted(proto.inputs.items())},
        outputs={a: _spec(a, t) for a, t in sorted(proto.outputs.items())},
        defaults=frozenset(proto.defaults.keys()),
        proto=proto,
    )


def _spec(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
  shape = None
  if info.HasField("tensor_shape") and not info.tensor_shape.unknown_rank:
    shape = tuple(d.size for d in info.tensor_shape.dim)
  return TensorSpec(
      alias=alias, tensor_name=info.name, tf_dtype=info.dtype, shape=shape
  )


def signatures_from_meta_graph(
    meta_graph: meta_graph_pb2.MetaGraphDef,
) -> dict[str, Signature]:
  return {
      key: Signature.from_proto(key, sig)
      for key, sig in sorted(meta_graph.signature_def.items())
      if key != INIT_OP_SIGNATURE_KEY
  }


class Api(enum.Enum):
  """Who asks for a signature; upstream words a missing one per API."""

  # gRPC Predict (and warmup): predict_util.
  PREDICT = "predict"
  # REST Predict looks the signature up to decode the JSON body first (the
  # GetInfoMap callback of upstream's FillPredictRequestFromJson).
  PREDICT_JSON = "predict_json"
  CLASSIFY = "classify"
  REGRESS = "regress"
  MULTI_INFERENCE = "multi_inference"


def _predict_missing(key: str) -> status.ServingError:
  return status.failed_precondition(f'Serving signature key "{key}" not found.')


def _predict_json_missing(key: str) -> status.ServingError:
  return status.invalid_argument(
      f'Serving signature name: "{key}" not found in signature def'
  )


def _example_api_missing(key: str) -> status.ServingError:
  return status.invalid_argument(f"No signature was found with the name: {key}")


def _multi_inference_missing(key: str) -> status.ServingError:
  return status.invalid_argument(
      f"Requested signature not found in model graph: {key}"
  )


_MISSING: dict[Api, Callable[[str], status.ServingError]] = {
    Api.PREDICT: _predict_missing,
    Api.PREDICT_JSON: _predict_json_missing,
    Api.CLASSIFY: _example_api_missing,
    Api.REGRESS: _example_api_missing,
    Api.MULTI_INFERENCE: _multi_inference_missing,
}


def resolve(
    signatures: Mapping[str, Signature], name: str | None, api: Api
) -> Signature:
  """The signature a request names ("" or None: `serving_default`).

  The one lookup every API and transport shares; only the error differs, as
  upstream's: FAILED_PRECONDITION for Predict, INVALID_ARGUMENT otherwise.
  """
  key = name or DEFAULT_SERVING_SIGNATURE_DEF_KEY
  sig = signatures.get(key)
  if sig is None:
    raise _MISSING[api](key)
  return sig
