"""The Open Inference Protocol's gRPC messages to numpy and back.

Input tensors come as typed `contents` (one repeated field per element
type) or as `raw_input_contents` (one little-endian buffer per input, BYTES
elements length-prefixed). A response answers in kind: raw output contents
when the request was raw (as Triton always answers, and tritonclient reads),
typed contents when the request used them and every output has a typed
field (FP16 has none, so any FP16 output makes the whole answer raw).
Messages are the generated ones of `tritonclient.grpc.service_pb2` (stubs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tensorflow_serving.model_servers.v2 import datatypes
from tensorflow_serving.model_servers.v2 import inference
from tensorflow_serving.model_servers.v2 import stubs
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

SignatureLookup = Callable[[str], signature_lib.Signature]

# Datatype -> the InferTensorContents field that carries it.
_TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_CONTENTS_FIELDS = tuple(sorted(set(_TYPED_FIELD.values())))


def parameter(params: Any, key: str) -> Any:
  """An InferParameter's value (None when absent)."""
  if key not in params:
    return None
  param = params[key]
  choice = param.WhichOneof("parameter_choice")
  return getattr(param, choice) if choice else None


def decode_infer(
    request: Any, lookup: SignatureLookup
) -> inference.InferRequest:
  signature_name = parameter(request.parameters, inference.SIGNATURE_NAME)
  if signature_name is not None and not isinstance(signature_name, str):
    raise status.invalid_argument(
        f"{inference.SIGNATURE_NAME} must be a string parameter"
    )
  sig = lookup(signature_name or "")
  raw = request.raw_input_contents
  if raw and len(raw) != len(request.inputs):
    raise status.invalid_argument(
        f"raw_input_contents has {len(raw)} buffers for "
        f"{len(request.inputs)} inputs: give every input its buffer or none"
    )
  inputs: dict[str, np.ndarray] = {}
  for i, tensor in enumerate(request.inputs):
    name = tensor.name
    where = f"input '{name}'"
    if name in inputs:
      raise status.invalid_argument(f"{where} appears more than once")
    datatypes.numpy_dtype(tensor.datatype)
    inference.check_input(sig, name, tensor.datatype)
    shape = list(tensor.shape)
    if raw:
      if tensor.HasField("contents") and _has_contents(tensor.contents):
        raise status.invalid_argument(
            f"{where} has both contents and raw_input_contents"
        )
      inputs[name] = datatypes.from_buffer(
          raw[i], tensor.datatype, shape, where
      )
    else:
      inputs[name] = _typed(tensor, shape, where)
  return inference.InferRequest(
      sig=sig,
      inputs=inputs,
      output_filter=tuple(o.name for o in request.outputs),
      id=request.id,
      # For gRPC: answer with raw output contents.
      binary_default=bool(raw) or not request.inputs,
  )


def _has_contents(contents: Any) -> bool:
  return any(len(getattr(contents, f)) for f in _CONTENTS_FIELDS)


def _typed(tensor: Any, shape: list[int], where: str) -> np.ndarray:
  datatype = tensor.datatype
  count = datatypes.element_count(shape, where)
  field = _TYPED_FIELD.get(datatype)
  if field is None:
    raise status.invalid_argument(
        f"{where}: {datatype} has no typed contents field; send it in "
        "raw_input_contents"
    )
  for other in _CONTENTS_FIELDS:
    if other != field and len(getattr(tensor.contents, other)):
      raise status.invalid_argument(
          f"{where}: {datatype} data must be in contents.{field}, not "
          f"contents.{other}"
      )
  values = getattr(tensor.contents, field)
  if len(values) != count:
    raise status.invalid_argument(
        f"{where}: shape {shape} holds {count} elements, "
        f"contents.{field} has {len(values)}"
    )
  dtype = datatypes.numpy_dtype(datatype)
  if datatype == "BYTES":
    out = np.empty(count, dtype=np.object_)
    out[:] = list(values)
    return out.reshape(shape)
  wide = np.array(values, dtype=_wide(field))
  array = wide.astype(dtype)
  if dtype.kind in ("i", "u") and not np.array_equal(array, wide):
    raise status.invalid_argument(
        f"{where}: a value is out of the range of {datatype}"
    )
  return array.reshape(shape)


def _wide(field: str) -> np.dtype:
  return np.dtype(
      {
          "bool_contents": np.bool_,
          "int_contents": np.int32,
          "int64_contents": np.int64,
          "uint_contents": np.uint32,
          "uint64_contents": np.uint64,
          "fp32_contents": np.float32,
          "fp64_contents": np.float64,
      }[field]
  )


def encode_infer(
    request: inference.InferRequest,
    outputs: dict[str, np.ndarray],
    model_name: str,
    model_version: int,
) -> Any:
  response = stubs.service_pb2.ModelInferResponse(
      model_name=model_name, model_version=str(model_version), id=request.id
  )
  names = inference.output_order(request, outputs)
  kinds = [datatypes.from_numpy(outputs[n].dtype) for n in names]
  raw = request.binary_default or any(k not in _TYPED_FIELD for k in kinds)
  for name, datatype in zip(names, kinds):
    value = outputs[name]
    tensor = response.outputs.add(
        name=name, datatype=datatype, shape=list(value.shape)
    )
    if raw:
      response.raw_output_contents.append(datatypes.to_buffer(value))
    elif datatype == "BYTES":
      tensor.contents.bytes_contents.extend(
          datatypes.as_bytes(v) for v in value.ravel()
      )
    else:
      getattr(tensor.contents, _TYPED_FIELD[datatype]).extend(
          value.ravel().tolist()
      )
  return response


def metadata_response(
    meta: inference.ModelMetadata,
) -> Any:
  response = stubs.service_pb2.ModelMetadataResponse(
      name=meta.name, versions=meta.versions, platform=meta.platform
  )
  for tensor in meta.inputs:
    response.inputs.add(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )
  for tensor in meta.outputs:
    response.outputs.add(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )
  return response
