"""The Open Inference Protocol (v2) with the clients its users run.

The real binary on free ports, driven by `tritonclient` over HTTP (JSON and
the binary tensor data extension) and gRPC (raw contents), by gRPC stubs
with typed contents, and by curl: every datatype, BYTES, signature
selection, errors, batching and metrics, and the model repository API
(load and unload under load, config-file polling, the flag that gates it).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import threading
import time

from absl.testing import absltest
from google.protobuf import text_format
import grpc
import numpy as np
import tensorflow as tf
from tritonclient import grpc as triton_grpc
from tritonclient import http as triton_http
from tritonclient import utils as triton_utils
from tritonclient.grpc import service_pb2
from tritonclient.grpc import service_pb2_grpc

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
DTYPES = test_models.DTYPES
STRINGS = test_models.STRINGS
EXTRA = "extra"
METRICS_PATH = "/monitoring/prometheus/metrics"
TritonError = triton_utils.InferenceServerException


def _sample(x_dtype: tf.DType) -> np.ndarray:
  if x_dtype == tf.string:
    return np.array([[b"a", b"\xff\x00b"], [b"", b"xyz"]], dtype=np.object_)
  if x_dtype == tf.bool:
    return np.array([[True, False], [False, True]])
  dtype = x_dtype.as_numpy_dtype
  high = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.5
  return np.array([[0, 1], [2, high]], dtype=dtype)


def _as_bytes(array: np.ndarray) -> list:
  return [
      [v.encode() if isinstance(v, str) else bytes(v) for v in row]
      for row in array.tolist()
  ]


def _metric_sum(text: str, name: str, **labels: str) -> float:
  """Sum of a metric's samples whose labels include `labels`."""
  total = 0.0
  for line in text.splitlines():
    if not line.startswith(name + "{") and not line.startswith(name + " "):
      continue
    found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
    if all(found.get(k) == v for k, v in labels.items()):
      total += float(line.rsplit(" ", 1)[1])
  return total


class V2ProtocolTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    models = {
        HALF: cls.repo.base_path(HALF, HALF),
        DTYPES: cls.repo.base_path(DTYPES, DTYPES),
        STRINGS: cls.repo.base_path(STRINGS, STRINGS),
    }
    cls.extra_path = cls.repo.base_path(EXTRA, HALF, versions=(3,))
    cls.config_text = test_models.model_config_text(models)
    config_path = cls.repo.write("models.config", cls.config_text)
    monitoring_path = cls.repo.write(
        "monitoring.config",
        f'prometheus_config {{ enable: true, path: "{METRICS_PATH}" }}\n',
    )
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_config_file={config_path}",
            "--enable_batching",
            "--enable_model_control_api",
            f"--monitoring_config_file={monitoring_path}",
        ],
    )
    cls.http = triton_http.InferenceServerClient(
        f"localhost:{cls.server.rest_port}", concurrency=4
    )
    cls.addClassCleanup(cls.http.close)
    cls.grpc = triton_grpc.InferenceServerClient(cls.server.grpc_address)
    cls.addClassCleanup(cls.grpc.close)
    cls.channel = grpc.insecure_channel(cls.server.grpc_address)
    cls.addClassCleanup(cls.channel.close)
    cls.stub = service_pb2_grpc.GRPCInferenceServiceStub(cls.channel)
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def metrics(self) -> str:
    return util.http_request(self.server, "GET", METRICS_PATH).body.decode()

  def half_input(self, module, values=(1.0, 2.0, 3.0), binary=True):
    x = np.array(values, np.float32)
    tensor = module.InferInput("x", list(x.shape), "FP32")
    if module is triton_http:
      tensor.set_data_from_numpy(x, binary_data=binary)
    else:
      tensor.set_data_from_numpy(x)
    return tensor

  # --- Health and metadata ----------------------------------------------------

  def test_health_and_server_metadata(self):
    for client in (self.http, self.grpc):
      self.assertTrue(client.is_server_live())
      self.assertTrue(client.is_server_ready())
      self.assertTrue(client.is_model_ready(HALF))
      self.assertTrue(client.is_model_ready(HALF, "1"))
      self.assertFalse(client.is_model_ready(HALF, "9"))
      self.assertFalse(client.is_model_ready("no_such_model"))
    meta = self.http.get_server_metadata()
    self.assertEqual(meta["name"], "tensorflow_serving")
    self.assertEqual(
        meta["extensions"], ["binary_tensor_data", "model_repository"]
    )
    grpc_meta = self.grpc.get_server_metadata()
    self.assertEqual(grpc_meta.name, "tensorflow_serving")
    self.assertEqual(grpc_meta.version, meta["version"])

  def test_model_metadata(self):
    meta = self.http.get_model_metadata(HALF)
    self.assertEqual(
        meta,
        {
            "name": HALF,
            "versions": ["1"],
            "platform": "tensorflow_savedmodel",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        },
    )
    grpc_meta = self.grpc.get_model_metadata(HALF, "1")
    self.assertEqual(grpc_meta.platform, "tensorflow_savedmodel")
    self.assertEqual(
        [(t.name, t.datatype, list(t.shape)) for t in grpc_meta.inputs],
        [("x", "FP32", [-1])],
    )
    # Another signature's metadata, selected as inference selects it.
    response = util.http_request(
        self.server, "GET", f"/v2/models/{STRINGS}?signature_name=echo_bytes"
    )
    doc = self.assertHttpOk(response)
    self.assertEqual(
        doc["inputs"], [{"name": "data", "datatype": "BYTES", "shape": [-1]}]
    )
    self.assertHttpError(
        util.http_request(self.server, "GET", "/v2/models/no_such_model"), 404
    )

  # --- Inference --------------------------------------------------------------

  def test_http_every_datatype_json_and_binary(self):
    for key, tf_dtype in test_models.DTYPE_SIGNATURES.items():
      x = _sample(tf_dtype)
      for binary in (True, False):
        if tf_dtype == tf.string and not binary:
          x = np.array([["a", "b"], ["", "é"]], dtype=np.object_)
        with self.subTest(signature=key, binary=binary):
          datatype = triton_utils.np_to_triton_dtype(x.dtype)
          tensor = triton_http.InferInput("x", list(x.shape), datatype)
          tensor.set_data_from_numpy(x, binary_data=binary)
          result = self.http.infer(
              DTYPES,
              [tensor],
              outputs=[
                  triton_http.InferRequestedOutput("y", binary_data=binary)
              ],
              parameters={"signature_name": key},
          )
          y = result.as_numpy("y")
          self.assertEqual(y.shape, x.shape)
          if tf_dtype == tf.string:
            self.assertEqual(_as_bytes(y), _as_bytes(x))
          else:
            self.assertEqual(y.dtype, x.dtype)
            np.testing.assert_array_equal(y, x)

  def test_grpc_every_datatype_raw_contents(self):
    for key, tf_dtype in test_models.DTYPE_SIGNATURES.items():
      x = _sample(tf_dtype)
      with self.subTest(signature=key):
        datatype = triton_utils.np_to_triton_dtype(x.dtype)
        tensor = triton_grpc.InferInput("x", list(x.shape), datatype)
        tensor.set_data_from_numpy(x)
        result = self.grpc.infer(
            DTYPES, [tensor], parameters={"signature_name": key}
        )
        y = result.as_numpy("y")
        if tf_dtype == tf.string:
          self.assertEqual(y.tolist(), x.tolist())
        else:
          self.assertEqual(y.dtype, x.dtype)
          np.testing.assert_array_equal(y, x)

  def test_grpc_typed_contents(self):
    request = service_pb2.ModelInferRequest(model_name=HALF, id="typed")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[3])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    response = self.stub.ModelInfer(request, timeout=30)
    self.assertEqual(response.id, "typed")
    self.assertEqual(response.model_version, "1")
    self.assertEqual(len(response.raw_output_contents), 0)
    self.assertEqual(
        list(response.outputs[0].contents.fp32_contents), [2.5, 3.0, 3.5]
    )
    request = service_pb2.ModelInferRequest(model_name=STRINGS)
    request.parameters["signature_name"].string_param = "echo_bytes"
    tensor = request.inputs.add(name="data", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"ab", b"\xff"])
    response = self.stub.ModelInfer(request, timeout=30)
    by_name = {o.name: o for o in response.outputs}
    self.assertEqual(
        list(by_name["data_bytes"].contents.bytes_contents), [b"ab", b"\xff"]
    )
    self.assertEqual(list(by_name["size"].contents.int_contents), [2, 1])

  def test_request_id_outputs_and_version(self):
    for module, client in ((triton_http, self.http), (triton_grpc, self.grpc)):
      with self.subTest(client=module.__name__):
        result = client.infer(
            STRINGS,
            [self._strings_input(module)],
            outputs=[module.InferRequestedOutput("size")],
            parameters={"signature_name": "echo_bytes"},
            request_id="req-7",
            model_version="1",
        )
        response = result.get_response()
        if module is triton_http:
          self.assertEqual(response["id"], "req-7")
          self.assertEqual([o["name"] for o in response["outputs"]], ["size"])
        else:
          self.assertEqual(response.id, "req-7")
          self.assertEqual([o.name for o in response.outputs], ["size"])
        np.testing.assert_array_equal(result.as_numpy("size"), [3, 0])

  def _strings_input(self, module):
    tensor = module.InferInput("data", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([b"abc", b""], dtype=np.object_))
    return tensor

  def test_json_output_of_non_utf8_bytes_is_refused(self):
    tensor = triton_http.InferInput("data", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"\xff"], dtype=np.object_))
    with self.assertRaisesRegex(TritonError, "not UTF-8"):
      self.http.infer(
          STRINGS,
          [tensor],
          outputs=[
              triton_http.InferRequestedOutput("data_bytes", binary_data=False)
          ],
          parameters={"signature_name": "echo_bytes"},
      )

  def test_errors(self):
    for module, client in ((triton_http, self.http), (triton_grpc, self.grpc)):
      with self.subTest(client=module.__name__):
        with self.assertRaises(TritonError) as cm:
          client.infer("no_such_model", [self.half_input(module)])
        self.assertIn(cm.exception.status(), ("404", "StatusCode.NOT_FOUND"))
        wrong = module.InferInput("x", [1], "FP64")
        wrong.set_data_from_numpy(np.array([1.0]))
        with self.assertRaises(TritonError) as cm:
          client.infer(HALF, [wrong])
        self.assertIn(
            cm.exception.status(), ("400", "StatusCode.INVALID_ARGUMENT")
        )
        self.assertIn("expects FP32", cm.exception.message())
        with self.assertRaises(TritonError) as cm:
          client.infer(
              HALF,
              [self.half_input(module)],
              parameters={"signature_name": "nope"},
          )
        self.assertIn(
            cm.exception.status(), ("400", "StatusCode.INVALID_ARGUMENT")
        )
    # The server goes on serving.
    self.assertTrue(self.http.is_server_ready())

  def test_curl_json_and_binary(self):
    url = f"http://localhost:{self.server.rest_port}/v2/models/{HALF}/infer"
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}
            ]
        }
    )
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", url, "-d", body],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    self.assertEqual(json.loads(out)["outputs"][0]["data"], [2.5, 3.0])
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    path = os.path.join(self.repo.root, "binary_request")
    with open(path, "wb") as f:
      f.write(header + np.array([4, 6], "<f4").tobytes())
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-i",
            "-X",
            "POST",
            url,
            "-H",
            f"Inference-Header-Content-Length: {len(header)}",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            f"@{path}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    length = int(
        re.search(rb"(?i)inference-header-content-length: (\d+)", head).group(1)
    )
    doc = json.loads(body[:length])
    self.assertEqual(doc["outputs"][0]["parameters"], {"binary_data_size": 8})
    np.testing.assert_array_equal(np.frombuffer(body[length:], "<f4"), [4, 5])

  # --- One pipeline: batching and metrics ---------------------------------------

  def status_page_requests(self, name: str) -> int:
    page = self.assertHttpOk(
        util.http_request(self.server, "GET", "/v1/status")
    )
    (model,) = [m for m in page["models"] if m["name"] == name]
    return model["traffic"]["totals"]["requests"]

  def test_batching_and_metrics_cover_v2_requests(self):
    page_before = self.status_page_requests(HALF)
    before = self.metrics()
    runs = 4
    for _ in range(runs):
      self.http.infer(HALF, [self.half_input(triton_http)])
      self.grpc.infer(HALF, [self.half_input(triton_grpc)])
    after = self.metrics()
    # The status page counts them with the model's other traffic.
    self.assertGreaterEqual(
        self.status_page_requests(HALF) - page_before, 2 * runs
    )
    batched = ":tensorflow:serving:batching_session:input_batch_size_count"
    self.assertGreaterEqual(
        _metric_sum(after, batched) - _metric_sum(before, batched), 2 * runs
    )
    latency = ":tensorflow:serving:request_latency_count"
    for entrypoint in ("REST", "GRPC"):
      labels = {
          "model_name": HALF,
          "API": "ModelInfer",
          "entrypoint": entrypoint,
      }
      self.assertEqual(
          _metric_sum(after, latency, **labels)
          - _metric_sum(before, latency, **labels),
          runs,
          msg=entrypoint,
      )

  # --- Model repository -------------------------------------------------------

  def test_load_and_unload_under_load(self):
    stop = threading.Event()
    failures: list[str] = []
    served = [0]

    def traffic():
      client = triton_http.InferenceServerClient(
          f"localhost:{self.server.rest_port}"
      )
      try:
        while not stop.is_set():
          try:
            result = client.infer(HALF, [self.half_input(triton_http)])
            np.testing.assert_array_equal(result.as_numpy("y"), [2.5, 3.0, 3.5])
            served[0] += 1
          except Exception as exc:  # pylint: disable=broad-except
            failures.append(repr(exc))
      finally:
        client.close()

    config = json.dumps(
        {"base_path": self.extra_path, "model_platform": "tensorflow"}
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      workers = [pool.submit(traffic) for _ in range(2)]
      try:
        for cycle in range(2):
          client = self.http if cycle % 2 == 0 else self.grpc
          client.load_model(EXTRA, config=config)
          self.assertTrue(self.http.is_model_ready(EXTRA, "3"))
          self.assert_served_everywhere(EXTRA, 3)
          client.unload_model(EXTRA)
          self.assertFalse(self.http.is_model_ready(EXTRA))
      finally:
        stop.set()
        for worker in workers:
          worker.result(timeout=60)
    self.assertEqual(failures, [])
    self.assertGreater(served[0], 0)
    index = {
        (m["name"], m["version"]): m["state"]
        for m in self.http.get_model_repository_index()
    }
    self.assertEqual(index[(EXTRA, "3")], "UNAVAILABLE")
    self.assertEqual(index[(HALF, "1")], "READY")

  def assert_served_everywhere(self, name: str, version: int) -> None:
    """A loaded model is in GetModelStatus, /v1/models, status page, metrics."""
    self.assertEqual(
        util.version_states(self.clients, name),
        {version: util.ModelVersionStatus.AVAILABLE},
    )
    status = self.assertHttpOk(
        util.http_request(self.server, "GET", f"/v1/models/{name}")
    )
    self.assertEqual(status["model_version_status"][0]["state"], "AVAILABLE")
    page = self.assertHttpOk(
        util.http_request(self.server, "GET", "/v1/status")
    )
    self.assertIn(name, [m["name"] for m in page["models"]])
    self.assertEqual(
        _metric_sum(
            self.metrics(),
            ":tensorflow:serving:loaded_versions",
            model_name=name,
        ),
        1.0,
    )
    result = self.http.infer(name, [self.half_input(triton_http)])
    np.testing.assert_array_equal(result.as_numpy("y"), [2.5, 3.0, 3.5])

  def test_repository_errors(self):
    with self.assertRaises(TritonError) as cm:
      self.http.load_model("nothing")
    self.assertEqual(cm.exception.status(), "400")
    with self.assertRaises(TritonError) as cm:
      self.http.load_model(
          "nothing", config=json.dumps({"base_path": "/no/such/dir"})
      )
    self.assertEqual(cm.exception.status(), "400")
    with self.assertRaises(TritonError) as cm:
      self.grpc.unload_model("nothing")
    self.assertEqual(cm.exception.status(), "StatusCode.NOT_FOUND")


class ModelControlConfigTest(util.ApiTestCase):
  """How the API meets a polled config file and HandleReloadConfigRequest."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.models = {HALF: cls.repo.base_path(HALF, HALF)}
    cls.extra_path = cls.repo.base_path(EXTRA, HALF, versions=(2,))
    cls.config_text = test_models.model_config_text(cls.models)
    config_path = cls.repo.write("models.config", cls.config_text)
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_config_file={config_path}",
            "--model_config_file_poll_wait_seconds=1",
            "--enable_model_control_api",
        ],
    )
    cls.http = triton_http.InferenceServerClient(
        f"localhost:{cls.server.rest_port}"
    )
    cls.addClassCleanup(cls.http.close)
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def test_api_wins_over_polling_until_a_whole_config_reload(self):
    self.http.load_model(
        EXTRA, config=json.dumps({"base_path": self.extra_path})
    )
    self.http.unload_model(HALF)
    time.sleep(3)  # Three polls of the unchanged file.
    self.assertTrue(self.http.is_model_ready(EXTRA))
    self.assertFalse(self.http.is_model_ready(HALF))
    # Upstream's whole-config reload forgets what the API did.
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(self.config_text, request.config)
    self.clients.model.HandleReloadConfigRequest(request, timeout=120)
    self.assertTrue(self.http.is_model_ready(HALF))
    util.wait_for(
        lambda: not self.http.is_model_ready(EXTRA), what="extra unloaded"
    )


class ModelControlOffTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.server = cls.class_server(
        cls.repo,
        [
            f"--model_name={HALF}",
            f"--model_base_path={cls.repo.base_path(HALF, HALF)}",
        ],
    )

  def test_off_by_default(self):
    http = triton_http.InferenceServerClient(
        f"localhost:{self.server.rest_port}"
    )
    self.addCleanup(http.close)
    grpc_client = triton_grpc.InferenceServerClient(self.server.grpc_address)
    self.addCleanup(grpc_client.close)
    config = json.dumps({"base_path": "/models/x"})
    with self.assertRaisesRegex(
        TritonError, "--enable_model_control_api"
    ) as cm:
      http.load_model("x", config=config)
    self.assertEqual(cm.exception.status(), "501")
    with self.assertRaises(TritonError) as cm:
      grpc_client.unload_model(HALF)
    self.assertEqual(cm.exception.status(), "StatusCode.UNIMPLEMENTED")
    # The index is read-only and answers; the model is still served.
    self.assertEqual(
        http.get_model_repository_index(),
        [{"name": HALF, "version": "1", "state": "READY", "reason": ""}],
    )
    self.assertTrue(http.is_model_ready(HALF))


if __name__ == "__main__":
  absltest.main()
