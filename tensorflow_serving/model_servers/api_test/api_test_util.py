"""Shared helpers for the API-compatibility tests: models, server, clients.

The tests drive the real `tensorflow_model_server` binary (a subprocess on
free ports) exactly as an upstream client would: gRPC through the official
`tensorflow_serving.apis` stubs, REST through plain HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
import gzip
import http.client
import json
import os
import shutil
import time
from typing import Any
import unittest

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.model_servers.api_test import test_models
from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two

ModelVersionStatus = get_model_status_pb2.ModelVersionStatus

# Model name with characters that must be URL-encoded in REST paths.
URL_NAME = "my model/x"
URL_NAME_QUOTED = "my%20model%2Fx"

_EXPORTERS: dict[str, Callable[[str], str]] = {
    test_models.HALF: half_plus_two.export_half_plus_two_tf1,
    test_models.TF2: test_models.export_tf2_module,
    test_models.KERAS: test_models.export_keras,
    test_models.STRINGS: test_models.export_strings,
    test_models.NONFINITE: test_models.export_nonfinite,
    test_models.DTYPES: test_models.export_dtypes,
}


class ModelRepo:
  """Exports each test model once into a temp dir; publishes versions."""

  def __init__(self, root: str | None = None):
    self.root = root or binaries.test_tmpdir()
    self._exports: dict[str, str] = {}

  def export(self, model: str) -> str:
    """Path of a SavedModel of `model` (exported on first use)."""
    if model not in self._exports:
      path = os.path.join(self.root, "exports", model)
      _EXPORTERS[model](path)
      self._exports[model] = path
    return self._exports[model]

  def base_path(
      self, name: str, model: str, versions: Sequence[int] = (1,)
  ) -> str:
    """`<root>/models/<name>` holding `versions` of `model`."""
    base = os.path.join(self.root, "models", name.replace("/", "_"))
    os.makedirs(base, exist_ok=True)
    for v in versions:
      if not os.path.exists(os.path.join(base, str(v))):
        test_models.copy_version(self.export(model), base, v)
    return base

  def cleanup(self) -> None:
    shutil.rmtree(self.root, ignore_errors=True)

  def empty_base_path(self, name: str) -> str:
    base = os.path.join(self.root, "models", name)
    os.makedirs(base, exist_ok=True)
    return base

  def write(self, filename: str, text: str) -> str:
    path = os.path.join(self.root, filename)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
    os.replace(tmp, path)
    return path


def start_server(
    flags: Sequence[str], timeout_s: float = 120.0, log_dir: str | None = None
) -> model_server.ModelServer:
  """Starts the binary and waits until it serves; the caller stops it."""
  server = model_server.start_server(list(flags), log_dir=log_dir)
  try:
    server.wait_until_serving(timeout_s)
  except BaseException:
    server.stop()
    raise
  return server


# --- REST ------------------------------------------------------------------


@dataclasses.dataclass
class HttpResponse:
  status: int
  headers: http.client.HTTPMessage
  body: bytes

  def json(self) -> Any:
    # Python's json accepts the NaN / Infinity tokens upstream writes.
    return json.loads(self.body)

  @property
  def content_type(self) -> str:
    return self.headers.get("Content-Type", "")


def http_request(
    server: model_server.ModelServer,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> HttpResponse:
  """Sends `path` verbatim (no re-encoding) and reads the whole reply."""
  if isinstance(body, str):
    body = body.encode("utf-8")
  conn = http.client.HTTPConnection(
      "localhost", server.rest_port, timeout=timeout_s
  )
  try:
    conn.request(method, path, body=body, headers=dict(headers or {}))
    reply = conn.getresponse()
    return HttpResponse(reply.status, reply.headers, reply.read())
  finally:
    conn.close()


def post_json(
    server: model_server.ModelServer, path: str, doc: Any, **kwargs
) -> HttpResponse:
  return http_request(server, "POST", path, json.dumps(doc), **kwargs)


def gzip_bytes(data: bytes) -> bytes:
  return gzip.compress(data)


# --- gRPC ------------------------------------------------------------------


class GrpcClients:
  """Stubs over one channel to a server."""

  def __init__(self, target: str):
    self.channel = grpc.insecure_channel(target)
    self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(
        self.channel
    )
    self.model = model_service_pb2_grpc.ModelServiceStub(self.channel)

  def close(self) -> None:
    self.channel.close()


def predict_request(
    model: str,
    inputs: Mapping[str, Any],
    signature_name: str = "",
    version: int | None = None,
    version_label: str = "",
    output_filter: Sequence[str] = (),
) -> predict_pb2.PredictRequest:
  """A PredictRequest as clients build it, with tf.make_tensor_proto."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  if version_label:
    request.model_spec.version_label = version_label
  for alias, value in inputs.items():
    if isinstance(value, tensor_pb2.TensorProto):
      request.inputs[alias].CopyFrom(value)
    else:
      request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
  request.output_filter.extend(output_filter)
  return request


def example(
    **features: float | int | bytes | Sequence[Any],
) -> tf.train.Example:
  """A tf.Example from keyword features (float, int or bytes values)."""
  ex = tf.train.Example()
  for name, value in features.items():
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    feature = ex.features.feature[name]
    if all(isinstance(v, bytes) for v in values):
      feature.bytes_list.value.extend(values)
    elif all(isinstance(v, int) for v in values):
      feature.int64_list.value.extend(values)
    else:
      feature.float_list.value.extend(float(v) for v in values)
  return ex


def classification_request(
    model: str,
    signature_name: str,
    examples: Sequence[tf.train.Example],
    context: tf.train.Example | None = None,
) -> classification_pb2.ClassificationRequest:
  request = classification_pb2.ClassificationRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature_name
  _fill_input(request.input, examples, context)
  return request


def regression_request(
    model: str,
    signature_name: str,
    examples: Sequence[tf.train.Example],
    context: tf.train.Example | None = None,
) -> regression_pb2.RegressionRequest:
  request = regression_pb2.RegressionRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature_name
  _fill_input(request.input, examples, context)
  return request


def _fill_input(input_proto, examples, context) -> None:
  if context is None:
    input_proto.example_list.examples.extend(examples)
  else:
    input_proto.example_list_with_context.context.CopyFrom(context)
    input_proto.example_list_with_context.examples.extend(examples)


def model_status(
    clients: GrpcClients, name: str, version: int | None = None
) -> get_model_status_pb2.GetModelStatusResponse:
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = name
  if version is not None:
    request.model_spec.version.value = version
  return clients.model.GetModelStatus(request, timeout=30)


def version_states(clients: GrpcClients, name: str) -> dict[int, int]:
  """{version: ModelVersionStatus.State} from GetModelStatus."""
  return {
      s.version: s.state
      for s in model_status(clients, name).model_version_status
  }


def wait_for(
    predicate: Callable[[], bool],
    timeout_s: float = 60.0,
    what: str = "condition",
) -> None:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    try:
      if predicate():
        return
    except grpc.RpcError:
      pass
    time.sleep(0.1)
  raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class ApiTestCase(unittest.TestCase):
  """Class-scoped fixtures and assertions shared by the API tests.

  Fixtures register class cleanups, so a server is stopped (and temporary
  files removed) even when setUpClass fails half-way.
  """

  @classmethod
  def class_repo(cls) -> ModelRepo:
    repo = ModelRepo()
    cls.addClassCleanup(repo.cleanup)
    return repo

  @classmethod
  def class_server(
      cls, repo: ModelRepo, flags: Sequence[str]
  ) -> model_server.ModelServer:
    server = start_server(flags, log_dir=repo.root)
    cls.addClassCleanup(server.stop)
    return server

  @classmethod
  def class_clients(cls, target: str) -> GrpcClients:
    clients = GrpcClients(target)
    cls.addClassCleanup(clients.close)
    return clients

  def assertRpcError(
      self,
      call: Callable[[], Any],
      code: grpc.StatusCode,
      message: str | None = None,
      contains: Sequence[str] = (),
  ) -> grpc.RpcError:
    """`call` fails with `code`; details equal `message` / contain strings."""
    with self.assertRaises(grpc.RpcError) as cm:
      call()
    err = cm.exception
    self.assertEqual(err.code(), code, msg=err.details())
    if message is not None:
      self.assertEqual(err.details(), message)
    for part in contains:
      self.assertIn(part, err.details())
    return err

  def assertHttpError(
      self,
      response: HttpResponse,
      status: int,
      message: str | None = None,
      contains: Sequence[str] = (),
  ) -> str:
    """A `{"error": ...}` JSON reply with `status`; returns the message."""
    self.assertEqual(response.status, status, msg=response.body[:2000])
    self.assertIn("application/json", response.content_type)
    doc = response.json()
    self.assertEqual(list(doc), ["error"], msg=doc)
    if message is not None:
      self.assertEqual(doc["error"], message)
    for part in contains:
      self.assertIn(part, doc["error"])
    return doc["error"]

  def assertHttpOk(self, response: HttpResponse) -> Any:
    self.assertEqual(response.status, 200, msg=response.body[:2000])
    self.assertIn("application/json", response.content_type)
    return response.json()

  def assertAllClose(self, actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, np.float64),
        np.asarray(expected, np.float64),
        rtol=1e-6,
    )
