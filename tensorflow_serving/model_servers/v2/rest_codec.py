"""The Open Inference Protocol's REST bodies: JSON, and the binary extension.

A request body is one JSON object, or (binary tensor data extension) a JSON
header of `Inference-Header-Content-Length` bytes followed by the raw data
of each input whose parameters give `binary_data_size`, in input order. The
response mirrors it: outputs asked for as binary (`binary_data` on the
output, or `binary_data_output` on the request) carry `binary_data_size`
and their bytes follow the JSON header. Decoding yields numpy for the
pipeline; nothing here runs a model or knows a transport.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

import numpy as np
import orjson

from tensorflow_serving.model_servers.v2 import datatypes
from tensorflow_serving.model_servers.v2 import inference
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
SignatureLookup = Callable[[str], signature_lib.Signature]

# HTTP status of a failure, as Triton's HTTP server maps its error codes
# (KServe's servers agree on 400, 404, 500 and 503).
_HTTP_STATUS = {
    status.Code.INVALID_ARGUMENT: 400,
    status.Code.FAILED_PRECONDITION: 400,
    status.Code.OUT_OF_RANGE: 400,
    status.Code.ALREADY_EXISTS: 400,
    status.Code.NOT_FOUND: 404,
    status.Code.UNAVAILABLE: 503,
    status.Code.RESOURCE_EXHAUSTED: 503,
    status.Code.UNIMPLEMENTED: 501,
    status.Code.DEADLINE_EXCEEDED: 504,
    status.Code.INTERNAL: 500,
    status.Code.UNAUTHENTICATED: 401,
}


def http_status(code: status.Code) -> int:
  return _HTTP_STATUS.get(code, 400)


def error_body(message: str) -> bytes:
  return orjson.dumps({"error": message})


@dataclasses.dataclass(frozen=True)
class Encoded:
  body: bytes
  content_type: str = JSON_TYPE
  # The JSON part's length when binary data follows it.
  header_length: int | None = None


def _object(value: Any, what: str) -> dict:
  if value is None:
    return {}
  if not isinstance(value, dict):
    raise status.invalid_argument(f"{what} must be a JSON object")
  return value


def _string(value: Any, what: str) -> str:
  if not isinstance(value, str):
    raise status.invalid_argument(f"{what} must be a string")
  return value


def _bool(value: Any, what: str) -> bool:
  if not isinstance(value, bool):
    raise status.invalid_argument(f"{what} must be a boolean")
  return value


def split_body(
    body: bytes, header_length: str | None
) -> tuple[bytes, memoryview]:
  """The JSON header and the binary data after it."""
  if header_length is None:
    return body, memoryview(b"")
  try:
    length = int(header_length)
  except ValueError:
    length = -1
  if length < 0 or length > len(body):
    raise status.invalid_argument(
        f"{HEADER_LENGTH} must be a byte count within the body "
        f"({len(body)} bytes), got '{header_length}'"
    )
  view = memoryview(body)
  return bytes(view[:length]), view[length:]


def parse_json(data: bytes, what: str = "request") -> dict:
  if not data:
    return {}
  try:
    doc = orjson.loads(data)
  except orjson.JSONDecodeError as exc:
    raise status.invalid_argument(
        f"failed to parse the {what} JSON: {exc}"
    ) from exc
  return _object(doc, f"the {what}")


def decode_infer(
    body: bytes, header_length: str | None, lookup: SignatureLookup
) -> inference.InferRequest:
  """An infer request body as numpy, its signature looked up by parameter."""
  json_part, binary = split_body(body, header_length)
  doc = parse_json(json_part, "inference request")
  params = _object(doc.get("parameters"), "parameters")
  signature_name = _string(
      params.get(inference.SIGNATURE_NAME, ""), inference.SIGNATURE_NAME
  )
  sig = lookup(signature_name)
  request_id = doc.get("id", "")
  if not isinstance(request_id, str):
    raise status.invalid_argument("id must be a string")
  raw_inputs = doc.get("inputs")
  if not isinstance(raw_inputs, list):
    raise status.invalid_argument("inputs must be a JSON array of tensors")
  inputs: dict[str, np.ndarray] = {}
  offset = 0
  for i, raw in enumerate(raw_inputs):
    tensor = _object(raw, f"inputs[{i}]")
    name = _string(tensor.get("name"), f"inputs[{i}].name")
    where = f"input '{name}'"
    if name in inputs:
      raise status.invalid_argument(f"{where} appears more than once")
    datatype = _string(tensor.get("datatype"), f"{where}: datatype")
    shape = tensor.get("shape")
    if not isinstance(shape, list):
      raise status.invalid_argument(f"{where}: shape must be a JSON array")
    datatypes.numpy_dtype(datatype)
    inference.check_input(sig, name, datatype)
    tensor_params = _object(tensor.get("parameters"), f"{where}: parameters")
    size = tensor_params.get("binary_data_size")
    if size is not None:
      if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise status.invalid_argument(
            f"{where}: binary_data_size must be a byte count"
        )
      if "data" in tensor:
        raise status.invalid_argument(
            f"{where} has both data and binary_data_size"
        )
      if offset + size > len(binary):
        raise status.invalid_argument(
            f"{where}: binary_data_size {size} runs past the "
            f"{len(binary)} bytes of binary data"
        )
      inputs[name] = datatypes.from_buffer(
          binary[offset : offset + size], datatype, shape, where
      )
      offset += size
    else:
      if "data" not in tensor:
        raise status.invalid_argument(f"{where} has no data")
      inputs[name] = json_tensor(tensor["data"], datatype, shape, where)
  if offset != len(binary):
    raise status.invalid_argument(
        f"{len(binary) - offset} bytes of binary data follow the request "
        "that no input's binary_data_size accounts for"
    )
  output_filter, binary_flags = _requested_outputs(doc.get("outputs"))
  return inference.InferRequest(
      sig=sig,
      inputs=inputs,
      output_filter=output_filter,
      id=request_id,
      binary=binary_flags,
      binary_default=_bool(
          params.get("binary_data_output", False), "binary_data_output"
      ),
  )


def _requested_outputs(raw: Any) -> tuple[tuple[str, ...], dict[str, bool]]:
  if raw is None:
    return (), {}
  if not isinstance(raw, list):
    raise status.invalid_argument("outputs must be a JSON array")
  names: list[str] = []
  flags: dict[str, bool] = {}
  for i, entry in enumerate(raw):
    output = _object(entry, f"outputs[{i}]")
    name = _string(output.get("name"), f"outputs[{i}].name")
    if name in names:
      raise status.invalid_argument(f"output '{name}' requested twice")
    names.append(name)
    params = _object(output.get("parameters"), f"output '{name}': parameters")
    if "binary_data" in params:
      flags[name] = _bool(
          params["binary_data"], f"output '{name}': binary_data"
      )
  return tuple(names), flags


_NUMERIC_KINDS = {
    "b": ("b",),
    "u": ("u", "i"),
    "i": ("u", "i"),
    "f": ("u", "i", "f"),
}


def json_tensor(
    data: Any, datatype: str, shape: list[int], where: str
) -> np.ndarray:
  """JSON `data` (flat or nested as the shape) as an array of `shape`."""
  count = datatypes.element_count(shape, where)
  dtype = datatypes.numpy_dtype(datatype)
  if not isinstance(data, list):
    data = [data]
  if datatype == "BYTES":
    flat = np.empty(count, dtype=np.object_)
    values = _flatten(data)
    if len(values) != count:
      raise _count_error(where, shape, count, len(values))
    for i, value in enumerate(values):
      if not isinstance(value, str):
        raise status.invalid_argument(
            f"{where}: BYTES elements must be JSON strings"
        )
      flat[i] = value.encode("utf-8")
    return flat.reshape(shape)
  try:
    parsed = np.asarray(data)
  except ValueError as exc:
    raise status.invalid_argument(
        f"{where}: data is not a regular array of numbers: {exc}"
    ) from exc
  if dtype.kind == "u" and parsed.dtype.kind in ("f", "O"):
    # Integers above INT64_MAX make numpy guess float or object.
    parsed = _big_unsigned(data, dtype, where)
  if parsed.size == 0:
    parsed = parsed.astype(dtype)
  elif parsed.dtype.kind not in _NUMERIC_KINDS[dtype.kind]:
    raise status.invalid_argument(
        f"{where}: data holds {_kind_name(parsed.dtype)} values, not "
        f"{datatype}"
    )
  if parsed.size != count:
    raise _count_error(where, shape, count, parsed.size)
  if parsed.dtype != dtype:
    converted = parsed.astype(dtype)
    if dtype.kind in ("u", "i") and not np.array_equal(converted, parsed):
      raise status.invalid_argument(
          f"{where}: a value is out of the range of {datatype}"
      )
    parsed = converted
  return parsed.reshape(shape)


def _big_unsigned(data: list, dtype: np.dtype, where: str) -> np.ndarray:
  values = _flatten(data)
  if not all(type(v) is int for v in values):  # pylint: disable=unidiomatic-typecheck
    raise status.invalid_argument(
        f"{where}: data holds non-integer values, not "
        f"{datatypes.from_numpy(dtype)}"
    )
  try:
    return np.array(values, dtype=dtype)
  except OverflowError as exc:
    raise status.invalid_argument(
        f"{where}: a value is out of the range of {datatypes.from_numpy(dtype)}"
    ) from exc


def _kind_name(dtype: np.dtype) -> str:
  return {
      "b": "boolean",
      "f": "floating-point",
      "u": "integer",
      "i": "integer",
  }.get(dtype.kind, "non-numeric")


def _count_error(where, shape, count, got) -> status.ServingError:
  return status.invalid_argument(
      f"{where}: shape {shape} holds {count} elements, data has {got}"
  )


def _flatten(data: list) -> list:
  out: list = []
  stack = [iter(data)]
  while stack:
    for value in stack[-1]:
      if isinstance(value, list):
        stack.append(iter(value))
        break
      out.append(value)
    else:
      stack.pop()
  return out


def encode_infer(
    request: inference.InferRequest,
    outputs: dict[str, np.ndarray],
    model_name: str,
    model_version: int,
) -> Encoded:
  """The response: JSON outputs, or a JSON header and their binary data."""
  tensors = []
  blobs: list[bytes] = []
  for name in inference.output_order(request, outputs):
    value = outputs[name]
    datatype = datatypes.from_numpy(value.dtype)
    tensor: dict[str, Any] = {
        "name": name,
        "datatype": datatype,
        "shape": list(value.shape),
    }
    if request.wants_binary(name):
      blob = datatypes.to_buffer(value)
      tensor["parameters"] = {"binary_data_size": len(blob)}
      blobs.append(blob)
    elif datatype == "BYTES":
      tensor["data"] = [_text(item, name) for item in value.ravel()]
    else:
      tensor["data"] = np.ascontiguousarray(value).ravel()
    tensors.append(tensor)
  doc: dict[str, Any] = {
      "model_name": model_name,
      "model_version": str(model_version),
  }
  if request.id:
    doc["id"] = request.id
  doc["outputs"] = tensors
  header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
  if not blobs:
    return Encoded(header)
  return Encoded(b"".join([header, *blobs]), BINARY_TYPE, len(header))


def _text(item: Any, name: str) -> str:
  data = datatypes.as_bytes(item)
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as exc:
    raise status.invalid_argument(
        f"output '{name}' holds bytes that are not UTF-8 text, which JSON "
        "cannot carry: request it with the binary_data parameter"
    ) from exc


def metadata_doc(meta: inference.ModelMetadata) -> bytes:
  def tensors(items):
    return [
        {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        for t in items
    ]

  return orjson.dumps(
      {
          "name": meta.name,
          "versions": meta.versions,
          "platform": meta.platform,
          "inputs": tensors(meta.inputs),
          "outputs": tensors(meta.outputs),
      }
  )


def server_metadata_doc() -> bytes:
  return orjson.dumps(
      {
          "name": inference.SERVER_NAME,
          "version": inference.server_version(),
          "extensions": list(inference.EXTENSIONS),
      }
  )
