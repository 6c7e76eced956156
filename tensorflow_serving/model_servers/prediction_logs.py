"""Served requests as upstream's PredictionLog, built on the log writer's thread.

The pipeline hands the request logger what it already holds (numpy inputs
and outputs, serialized Examples, or MultiInference protos); these entries
turn that into a PredictionLog only once the writer thread gets to them.
gRPC and REST requests give the same log: a REST request is logged as the
PredictRequest (or ClassificationRequest / RegressionRequest) it stands for,
with the signature it resolved to, so any log replays over either API and
through upstream's warmup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
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


def _finish(
    log: PredictionLog,
    metadata: logging_pb2.LogMetadata,
    served: servable_id_lib.ServableId,
    signature: str,
) -> bytes:
  log.log_metadata.CopyFrom(metadata)
  _served_spec(log.log_metadata.model_spec, served, signature)
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
    return _finish(log, metadata, self.served, self.signature)


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
