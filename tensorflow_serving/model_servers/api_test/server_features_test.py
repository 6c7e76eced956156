"""Transport and operations flags, and the endpoints beyond upstream.

One server runs with CORS, a REST timeout, the gRPC health service, a UNIX
socket, gRPC channel arguments, tensor_content serialization and Prometheus
monitoring all enabled; each test checks one of them. `/v1/models` (list) and
`/v1/health/{live,ready}` are this server's additions to upstream's REST API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import unittest

from google.protobuf import text_format
import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
TF2 = test_models.TF2
STRINGS = test_models.STRINGS
Code = grpc.StatusCode
State = util.ModelVersionStatus.State
METRICS_PATH = "/monitoring/prometheus/metrics"
REST_TIMEOUT_MS = 1000
MAX_METADATA_BYTES = 4096


def _reload(clients: util.GrpcClients, config_text: str):
  request = model_management_pb2.ReloadConfigRequest()
  text_format.Parse(config_text, request.config)
  return clients.model.HandleReloadConfigRequest(request, timeout=120)


class ServerFeaturesTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.models = {
        HALF: cls.repo.base_path(HALF, HALF),
        TF2: cls.repo.base_path(TF2, TF2),
        STRINGS: cls.repo.base_path(STRINGS, STRINGS),
    }
    config_path = cls.repo.write(
        "models.config", test_models.model_config_text(cls.models)
    )
    monitoring_path = cls.repo.write(
        "monitoring.config",
        f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n',
    )
    # A UNIX socket path must fit in sockaddr_un (108 bytes); Bazel's
    # TEST_TMPDIR can be longer.
    socket_dir = tempfile.mkdtemp(prefix="tfs_api_", dir="/tmp")
    cls.addClassCleanup(shutil.rmtree, socket_dir, ignore_errors=True)
    cls.socket_path = os.path.join(socket_dir, "grpc.sock")
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_config_file={config_path}",
            "--rest_api_enable_cors_support",
            f"--rest_api_timeout_in_ms={REST_TIMEOUT_MS}",
            "--enable_grpc_healthcheck_service",
            f"--grpc_socket_path={cls.socket_path}",
            "--grpc_channel_arguments="
            f"grpc.max_metadata_size={MAX_METADATA_BYTES},"
            f"grpc.absolute_max_metadata_size={MAX_METADATA_BYTES},"
            "grpc.primary_user_agent=tfs-api-test",
            "--enable_serialization_as_tensor_content",
            f"--monitoring_config_file={monitoring_path}",
        ],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def get(self, path: str, **kwargs) -> util.HttpResponse:
    return util.http_request(self.server, "GET", path, **kwargs)

  def predict_half(
      self, channel_clients: util.GrpcClients | None = None, **kwargs
  ):
    clients = channel_clients or self.clients
    return clients.prediction.Predict(
        util.predict_request(HALF, {"x": np.array([2.0, 4.0], np.float32)}),
        timeout=30,
        **kwargs,
    )

  # --- /v1/models and /v1/health (beyond upstream) ------------------------

  def test_list_models(self):
    doc = self.assertHttpOk(self.get("/v1/models"))
    self.assertIsInstance(doc, dict)
    for name in self.models:
      entry = _find_named(doc, name)
      self.assertIsNotNone(entry, f"model {name} not listed: {doc}")
      statuses = [
          s for s in _walk(entry) if isinstance(s, dict) and "version" in s
      ]
      self.assertIn(
          {
              "version": "1",
              "state": "AVAILABLE",
              "status": {"error_code": "OK", "error_message": ""},
          },
          statuses,
          msg=entry,
      )

  def test_health_live(self):
    response = self.get("/v1/health/live")
    self.assertEqual(response.status, 200, msg=response.body)

  def test_health_ready_when_all_models_available(self):
    response = self.get("/v1/health/ready")
    self.assertEqual(response.status, 200, msg=response.body)

  def test_health_ready_is_503_until_a_new_model_is_available(self):
    late = self.repo.empty_base_path("late")
    with_late = test_models.model_config_text({**self.models, "late": late})
    outcome: dict[str, object] = {}

    def reload_with_late():
      try:
        outcome["response"] = _reload(self.clients, with_late)
      except grpc.RpcError as exc:  # Reported by the assertions below.
        outcome["error"] = exc

    thread = threading.Thread(target=reload_with_late)
    thread.start()
    try:
      util.wait_for(
          lambda: self.get("/v1/health/ready").status == 503,
          30,
          "/v1/health/ready to answer 503 while 'late' has no " "version",
      )
      # Other models keep serving meanwhile.
      self.assertEqual(list(self.predict_half().outputs), ["y"])
      self.assertEqual(self.get("/v1/health/live").status, 200)
    finally:
      test_models.copy_version(self.repo.export(HALF), late, 1)
      thread.join(120)
    self.assertFalse(thread.is_alive(), "the reload never returned")
    self.assertNotIn("error", outcome)
    self.assertEqual(outcome["response"].status.error_code, 0)
    self.assertEqual(
        util.version_states(self.clients, "late"), {1: State.AVAILABLE}
    )
    response = self.get("/v1/health/ready")
    self.assertEqual(response.status, 200, msg=response.body)
    _reload(self.clients, test_models.model_config_text(self.models))
    self.assertEqual(self.get("/v1/health/ready").status, 200)

  # --- CORS ---------------------------------------------------------------

  def assertCorsHeaders(self, response: util.HttpResponse) -> None:
    self.assertEqual(response.headers.get("Access-Control-Allow-Origin"), "*")
    methods = response.headers.get("Access-Control-Allow-Methods", "")
    self.assertEqual({m.strip() for m in methods.split(",")}, {"POST", "GET"})
    self.assertEqual(
        response.headers.get("Access-Control-Allow-Headers"), "Content-Type"
    )

  def test_cors_headers_on_responses(self):
    origin = {"Origin": "http://example.com"}
    response = util.post_json(
        self.server,
        "/v1/models/half:predict",
        {"instances": [2.0]},
        headers=origin,
    )
    self.assertEqual(self.assertHttpOk(response), {"predictions": [3.0]})
    self.assertCorsHeaders(response)
    response = self.get("/v1/models/half", headers=origin)
    self.assertHttpOk(response)
    self.assertCorsHeaders(response)

  def test_cors_preflight(self):
    for origin in ("http://example.com", "https://example.com:8443"):
      response = util.http_request(
          self.server,
          "OPTIONS",
          "/v1/models/half:predict",
          headers={
              "Origin": origin,
              "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "Content-Type",
          },
      )
      self.assertEqual(response.status, 200, msg=response.body)
      self.assertCorsHeaders(response)

  def test_cors_preflight_without_origin(self):
    response = util.http_request(
        self.server, "OPTIONS", "/v1/models/half:predict"
    )
    self.assertHttpError(
        response, 400, "Origin header is missing in CORS preflight"
    )

  def test_cors_preflight_with_non_http_origin(self):
    response = util.http_request(
        self.server,
        "OPTIONS",
        "/v1/models/half:predict",
        headers={"Origin": "ftp://example.com"},
    )
    self.assertEqual(response.status, 400, msg=response.body)

  # --- gzip request bodies ------------------------------------------------

  def test_gzip_request_body(self):
    body = util.gzip_bytes(json.dumps({"instances": [2.0, 4.0]}).encode())
    response = util.http_request(
        self.server,
        "POST",
        "/v1/models/half:predict",
        body,
        headers={
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )
    self.assertEqual(self.assertHttpOk(response), {"predictions": [3.0, 4.0]})
    body = util.gzip_bytes(
        json.dumps(
            {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
        ).encode()
    )
    response = util.http_request(
        self.server,
        "POST",
        "/v1/models/half:regress",
        body,
        headers={"Content-Encoding": "gzip"},
    )
    self.assertEqual(self.assertHttpOk(response), {"results": [3.0]})

  # --- --rest_api_timeout_in_ms -------------------------------------------

  def test_rest_timeout_is_504(self):
    start = time.monotonic()
    response = util.post_json(
        self.server,
        "/v1/models/tf2:predict",
        {"signature_name": "slow", "inputs": {"x": [1.0], "seconds": 10.0}},
        timeout_s=60,
    )
    elapsed = time.monotonic() - start
    self.assertHttpError(response, 504)
    self.assertLess(elapsed, 8.0, "the request ran past its timeout")
    # Fast requests on the same signature are unaffected.
    response = util.post_json(
        self.server,
        "/v1/models/tf2:predict",
        {"signature_name": "slow", "inputs": {"x": [1.0], "seconds": 0.0}},
    )
    self.assertEqual(self.assertHttpOk(response), {"outputs": [1.0]})

  # --- gRPC: health, socket, channel arguments, tensor_content ------------

  def test_grpc_health_service(self):
    stub = health_pb2_grpc.HealthStub(self.clients.channel)
    # "" is the whole server; Kubernetes' gRPC probes ask for the fully
    # qualified names; the short names stay SERVING for older clients.
    for service in (
        "",
        "tensorflow.serving.PredictionService",
        "tensorflow.serving.ModelService",
        "ModelService",
        "PredictionService",
    ):
      response = stub.Check(
          health_pb2.HealthCheckRequest(service=service), timeout=10
      )
      self.assertEqual(
          response.status, health_pb2.HealthCheckResponse.SERVING, msg=service
      )
    self.assertRpcError(
        lambda: stub.Check(
            health_pb2.HealthCheckRequest(service="nope"), timeout=10
        ),
        Code.NOT_FOUND,
    )

  def test_grpc_unix_socket(self):
    clients = util.GrpcClients(f"unix:{self.socket_path}")
    try:
      response = self.predict_half(clients)
      self.assertAllClose(tf.make_ndarray(response.outputs["y"]), [3.0, 4.0])
      self.assertEqual(util.version_states(clients, HALF), {1: State.AVAILABLE})
    finally:
      clients.close()

  def test_grpc_channel_arguments(self):
    # grpc.absolute_max_metadata_size (an int argument) is in effect.
    self.predict_half(metadata=[("x-small", "a" * 100)])
    self.assertRpcError(
        lambda: self.predict_half(
            metadata=[("x-big", "a" * (2 * MAX_METADATA_BYTES))]
        ),
        Code.RESOURCE_EXHAUSTED,
    )
    self.predict_half()

  def test_tensor_content_serialization(self):
    response = self.predict_half()
    y = response.outputs["y"]
    self.assertEqual(y.dtype, types_pb2.DT_FLOAT)
    self.assertEqual(len(y.tensor_content), 8)
    self.assertEqual(list(y.float_val), [])
    self.assertAllClose(tf.make_ndarray(y), [3.0, 4.0])
    response = self.clients.prediction.Predict(
        util.predict_request(
            STRINGS,
            {
                "text": np.array([b"ab", b"c"], object),
                "count": np.array([1, 2], np.int64),
            },
        ),
        timeout=30,
    )
    total = response.outputs["total"]
    self.assertEqual(len(total.tensor_content), 16)
    self.assertEqual(tf.make_ndarray(total).tolist(), [3, 3])
    # TensorFlow never packs strings into tensor_content.
    upper = response.outputs["upper"]
    self.assertEqual(list(upper.string_val), [b"AB", b"C"])
    self.assertEqual(upper.tensor_content, b"")

  # --- Prometheus ---------------------------------------------------------

  def test_prometheus_metrics(self):
    self.predict_half()
    util.post_json(self.server, "/v1/models/half:predict", {"instances": [1.0]})
    response = self.get(METRICS_PATH)
    self.assertEqual(response.status, 200)
    self.assertTrue(
        response.content_type.startswith("text/plain"),
        msg=response.content_type,
    )
    text = response.body.decode()
    count_lines = [
        line
        for line in text.splitlines()
        if line.startswith(":tensorflow:serving:request_count{")
    ]
    self.assertTrue(
        any(
            'model_name="half"' in line and 'status="OK"' in line
            for line in count_lines
        ),
        msg=count_lines,
    )
    latency = [
        line
        for line in text.splitlines()
        if line.startswith(":tensorflow:serving:request_latency_bucket{")
    ]
    for entrypoint in ("GRPC", "REST"):
      self.assertTrue(
          any(
              f'entrypoint="{entrypoint}"' in line
              and 'model_name="half"' in line
              for line in latency
          ),
          msg=f"no {entrypoint} latency for half",
      )
    self.assertTrue(
        re.search(
            r"^:tensorflow:serving:request_latency_count\{", text, re.MULTILINE
        )
    )
    self.assertTrue(
        re.search(
            r"^:tensorflow:serving:request_latency_sum\{", text, re.MULTILINE
        )
    )

  def test_prometheus_metric_types(self):
    # Upstream's exporter types request_count as a counter (under its
    # upstream name, without a `_total` suffix) and latencies as histograms.
    self.predict_half()
    text = self.get(METRICS_PATH).body.decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    self.assertEqual(
        types.get(":tensorflow:serving:request_latency"), "histogram"
    )
    self.assertEqual(types.get(":tensorflow:serving:request_count"), "counter")
    self.assertNotIn(":tensorflow:serving:request_count_total", text)


def _walk(node):
  yield node
  if isinstance(node, dict):
    for value in node.values():
      yield from _walk(value)
  elif isinstance(node, list):
    for value in node:
      yield from _walk(value)


def _find_named(doc, name: str):
  for node in _walk(doc):
    if isinstance(node, dict) and node.get("name") == name:
      return node
  return None


if __name__ == "__main__":
  unittest.main()
