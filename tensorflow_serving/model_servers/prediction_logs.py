"""Served requests as upstream's PredictionLog, built on the log writer's thread.

The pipeline hands the request logger what it already holds (numpy inputs
and outputs, serialized Examples, or MultiInference protos); these entries
turn that into a PredictionLog only once the writer thread gets to them.
gRPC and REST requests give the same log: a REST request is logged as the
PredictRequest (or ClassificationRequest / RegressionRequest) it stands for,
with the signature it resolved to, so any log replays over either API and
through upstream's warmup.

A Predict's log (the one every batched request of a logged model writes)
is written in protobuf wire format by concatenating the encoded tensors and
specs (`_predict_log_bytes`); building it as a message costs the writer
thread, which shares the interpreter with the serving threads, several
times as much. prediction_logs_test checks it parses to the message the
other path builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import functools
import time
from typing import Any

import numpy as np

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import logging_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import proto_wire

PredictionLog = prediction_log_pb2.PredictionLog


def _request_spec(
    out: model_pb2.ModelSpec, spec: model_pb2.ModelSpec, signature: str
) -> None:
  """The client's ModelSpec, with the signature it resolved to."""
  out.CopyFrom(spec)
  out.signature_name = signature


def _served_spec(
    out: model_pb2.ModelSpec,
    served: servable_id_lib.ServableId,
    signature: str,
) -> None:
  out.name = served.name
  out.version.value = served.version
  out.signature_name = signature


def _set_metadata(
    log: PredictionLog,
    metadata: logging_pb2.LogMetadata,
    served: servable_id_lib.ServableId,
    signature: str,
) -> None:
  log.log_metadata.CopyFrom(metadata)
  _served_spec(log.log_metadata.model_spec, served, signature)


def _finish(
    log: PredictionLog,
    metadata: logging_pb2.LogMetadata,
    served: servable_id_lib.ServableId,
    signature: str,
) -> bytes:
  _set_metadata(log, metadata, served, signature)
  return log.SerializeToString()


def _examples_input(out: Any, examples: np.ndarray) -> None:
  """Serialized Examples (context already merged) as an ExampleList."""
  for serialized in examples.tolist():
    out.example_list.examples.add().ParseFromString(serialized)


@dataclasses.dataclass(frozen=True, slots=True)
class PredictEntry:
  """A Predict: decoded inputs, the output filter and the outputs."""

  served: servable_id_lib.ServableId
  spec: model_pb2.ModelSpec
  signature: str
  inputs: Mapping[str, np.ndarray]
  output_filter: Sequence[str]
  outputs: Mapping[str, np.ndarray]
  timestamp_s: float = dataclasses.field(default_factory=time.time)

  @property
  def model_name(self) -> str:
    return self.served.name

  @property
  def nbytes(self) -> int:
    return sum(a.nbytes for a in self.inputs.values()) + sum(
        a.nbytes for a in self.outputs.values()
    )

  def serialize(self, metadata: logging_pb2.LogMetadata) -> bytes:
    return _predict_log_bytes(self, metadata)

  def message(self, metadata: logging_pb2.LogMetadata) -> PredictionLog:
    """The same log built as a message (the reference for the bytes)."""
    log = PredictionLog()
    request = log.predict_log.request
    _request_spec(request.model_spec, self.spec, self.signature)
    for alias, value in self.inputs.items():
      tensor_codec.ndarray_to_tensor_proto(
          value, use_tensor_content=True, out=request.inputs[alias]
      )
    request.output_filter.extend(self.output_filter)
    response = log.predict_log.response
    _served_spec(response.model_spec, self.served, self.signature)
    for alias, value in self.outputs.items():
      tensor_codec.ndarray_to_tensor_proto(
          value, use_tensor_content=True, out=response.outputs[alias]
      )
    _set_metadata(log, metadata, self.served, self.signature)
    return log


# Field numbers (tensorflow_serving/apis/*.proto).
_LOG_METADATA = 1  # PredictionLog.log_metadata
_PREDICT_LOG = 6  # PredictionLog.predict_log
_REQUEST, _RESPONSE = 1, 2  # PredictLog
_REQUEST_SPEC, _INPUTS, _OUTPUT_FILTER = 1, 2, 3  # PredictRequest
_OUTPUTS, _RESPONSE_SPEC = 1, 2  # PredictResponse
_SPEC_NAME, _SPEC_VERSION, _SPEC_SIGNATURE = 1, 2, 3  # ModelSpec
_MAP_KEY, _MAP_VALUE = 1, 2  # A map entry
_PREDICT_LOG_TAG = proto_wire.tag(_PREDICT_LOG, proto_wire.LEN)
_REQUEST_TAG = proto_wire.tag(_REQUEST, proto_wire.LEN)
_RESPONSE_TAG = proto_wire.tag(_RESPONSE, proto_wire.LEN)
_REQUEST_SPEC_TAG = proto_wire.tag(_REQUEST_SPEC, proto_wire.LEN)
_INPUTS_TAG = proto_wire.tag(_INPUTS, proto_wire.LEN)
_OUTPUTS_TAG = proto_wire.tag(_OUTPUTS, proto_wire.LEN)


# TensorProto's dtype, tensor_shape and tensor_content; TensorShapeProto's
# dim and Dim's size.
_DTYPE, _SHAPE, _CONTENT = 1, 2, 4
_DIM, _DIM_SIZE = 2, 1
_CONTENT_TAG = proto_wire.tag(_CONTENT, proto_wire.LEN)


@functools.lru_cache(maxsize=1024)
def _tensor_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
  """A numeric TensorProto's dtype and tensor_shape fields."""
  w = proto_wire
  dims = b"".join(
      w.length_delimited(_DIM, w.uint(_DIM_SIZE, d) if d else b"")
      for d in shape
  )
  return w.uint(_DTYPE, tensor_codec.dtype_enum(dtype)) + w.length_delimited(
      _SHAPE, dims
  )


def _tensor_parts(value: np.ndarray, parts: list[bytes]) -> int:
  """Appends what ndarray_to_tensor_proto(value, use_tensor_content=True)
  encodes to `parts`; returns its length.

  Numbers and bools are written here (their tensor_content is the array's
  little-endian bytes); strings and the rest go through tensor_codec.
  """
  dtype = value.dtype
  if dtype.kind not in "biufc":
    encoded = tensor_codec.ndarray_to_tensor_proto(
        value, use_tensor_content=True
    ).SerializeToString()
    parts.append(encoded)
    return len(encoded)
  header = _tensor_header(dtype, value.shape)
  if not value.size:
    parts.append(header)
    return len(header)
  if dtype.byteorder == ">":
    value = value.astype(dtype.newbyteorder("<"))
  content = value.tobytes()
  length = proto_wire.varint(len(content))
  parts += (header, _CONTENT_TAG, length, content)
  return len(header) + 1 + len(length) + len(content)


@functools.lru_cache(maxsize=1024)
def _map_key(alias: str) -> bytes:
  """A map entry's key field and its value field's tag."""
  return proto_wire.string(_MAP_KEY, alias) + proto_wire.tag(
      _MAP_VALUE, proto_wire.LEN
  )


def _tensor_map(
    tag: bytes, tensors: Mapping[str, np.ndarray], parts: list[bytes]
) -> int:
  """Appends map<string, TensorProto> entries (one `tag` field each) to
  `parts`; returns their length."""
  varint = proto_wire.varint
  total = 0
  for alias, value in tensors.items():
    key = _map_key(alias)
    tensor: list[bytes] = []
    tensor_length = _tensor_parts(value, tensor)
    value_length = varint(tensor_length)
    entry_length = len(key) + len(value_length) + tensor_length
    entry_prefix = varint(entry_length)
    parts += (tag, entry_prefix, key, value_length)
    parts += tensor
    total += len(tag) + len(entry_prefix) + entry_length
  return total


@functools.lru_cache(maxsize=1024)
def _served_spec_bytes(served: servable_id_lib.ServableId, signature: str):
  """ModelSpec{name, version, signature_name} (proto3: empty left out)."""
  w = proto_wire
  parts = [w.string(_SPEC_NAME, served.name) if served.name else b""]
  # google.protobuf.Int64Value: its value field is 1.
  version = w.uint(1, served.version) if served.version else b""
  parts.append(w.length_delimited(_SPEC_VERSION, version))
  if signature:
    parts.append(w.string(_SPEC_SIGNATURE, signature))
  return b"".join(parts)


def _predict_log_bytes(
    entry: PredictEntry, metadata: logging_pb2.LogMetadata
) -> bytes:
  """PredictEntry.message(metadata), serialized, without building it.

  The parts are gathered with their lengths and joined once, so the
  tensors' bytes are copied once.
  """
  w = proto_wire
  varint = w.varint
  spec = entry.spec
  if spec.signature_name != entry.signature:
    spec = model_pb2.ModelSpec()
    _request_spec(spec, entry.spec, entry.signature)
  spec_bytes = spec.SerializeToString()
  spec_length = varint(len(spec_bytes))
  request = [_REQUEST_SPEC_TAG, spec_length, spec_bytes]
  request_length = 1 + len(spec_length) + len(spec_bytes)
  request_length += _tensor_map(_INPUTS_TAG, entry.inputs, request)
  for name in entry.output_filter:
    field = w.string(_OUTPUT_FILTER, name)
    request.append(field)
    request_length += len(field)
  served = _served_spec_bytes(entry.served, entry.signature)
  response: list[bytes] = []
  response_length = _tensor_map(_OUTPUTS_TAG, entry.outputs, response)
  served_field = w.length_delimited(_RESPONSE_SPEC, served)
  response.append(served_field)
  response_length += len(served_field)
  request_prefix = varint(request_length)
  response_prefix = varint(response_length)
  log_length = (
      2
      + len(request_prefix)
      + request_length
      + len(response_prefix)
      + response_length
  )
  # metadata has no model_spec of its own (RequestLogger.metadata): the
  # served one goes first, as field order has it.
  meta = w.length_delimited(1, served) + metadata.SerializeToString()
  parts = [
      w.length_delimited(_LOG_METADATA, meta),
      _PREDICT_LOG_TAG,
      varint(log_length),
      _REQUEST_TAG,
      request_prefix,
  ]
  parts += request
  parts += (_RESPONSE_TAG, response_prefix)
  parts += response
  return b"".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class ClassifyEntry:
  served: servable_id_lib.ServableId
  spec: model_pb2.ModelSpec
  signature: str
  examples: np.ndarray  # Serialized tf.Examples.
  classifications: classifier.Classifications
  timestamp_s: float = dataclasses.field(default_factory=time.time)

  @property
  def model_name(self) -> str:
    return self.served.name

  @property
  def nbytes(self) -> int:
    return sum(len(e) for e in self.examples.tolist())

  def serialize(self, metadata: logging_pb2.LogMetadata) -> bytes:
    log = PredictionLog()
    request = log.classify_log.request
    _request_spec(request.model_spec, self.spec, self.signature)
    _examples_input(request.input, self.examples)
    response = log.classify_log.response
    _served_spec(response.model_spec, self.served, self.signature)
    classifier.fill_classification_result(self.classifications, response.result)
    return _finish(log, metadata, self.served, self.signature)


@dataclasses.dataclass(frozen=True, slots=True)
class RegressEntry:
  served: servable_id_lib.ServableId
  spec: model_pb2.ModelSpec
  signature: str
  examples: np.ndarray  # Serialized tf.Examples.
  values: np.ndarray
  timestamp_s: float = dataclasses.field(default_factory=time.time)

  @property
  def model_name(self) -> str:
    return self.served.name

  @property
  def nbytes(self) -> int:
    return sum(len(e) for e in self.examples.tolist()) + self.values.nbytes

  def serialize(self, metadata: logging_pb2.LogMetadata) -> bytes:
    log = PredictionLog()
    request = log.regress_log.request
    _request_spec(request.model_spec, self.spec, self.signature)
    _examples_input(request.input, self.examples)
    response = log.regress_log.response
    _served_spec(response.model_spec, self.served, self.signature)
    regressor.fill_regression_result(self.values, response.result)
    return _finish(log, metadata, self.served, self.signature)


@dataclasses.dataclass(frozen=True, slots=True)
class MultiInferenceEntry:
  """gRPC only: the request and response protos themselves."""

  served: servable_id_lib.ServableId
  request: inference_pb2.MultiInferenceRequest
  response: inference_pb2.MultiInferenceResponse
  timestamp_s: float = dataclasses.field(default_factory=time.time)

  @property
  def model_name(self) -> str:
    return self.served.name

  @property
  def nbytes(self) -> int:
    return self.request.ByteSize() + self.response.ByteSize()

  def serialize(self, metadata: logging_pb2.LogMetadata) -> bytes:
    log = PredictionLog()
    log.multi_inference_log.request.CopyFrom(self.request)
    log.multi_inference_log.response.CopyFrom(self.response)
    return _finish(log, metadata, self.served, "")
