"""Tests mnist_client against an in-process fake PredictionService."""

from __future__ import annotations

from concurrent import futures
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

from absl.testing import absltest
import grpc
import numpy as np
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.example import mnist_client
from tensorflow_serving.example import mnist_test_util

# The source root: the repo, or the runfiles tree under Bazel.
_ROOT = pathlib.Path(os.path.abspath(__file__)).parents[2]
_WRONG_DIGIT = 3  # The fake model misreads every 3.


class _FakeMnistService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Reads synthetic digits exactly, except _WRONG_DIGIT; tracks load."""

  def __init__(self):
    self.delay = 0.0
    self._lock = threading.Lock()
    self._in_flight = 0
    self.max_in_flight = 0

  def Predict(
      self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
  ) -> predict_pb2.PredictResponse:
    if request.model_spec.name != "mnist":
      context.abort(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: "
          f"Latest({request.model_spec.name})",
      )
    tensor = request.inputs["images"]
    if (
        request.model_spec.signature_name != "predict_images"
        or tensor.dtype != types_pb2.DT_FLOAT
        or [d.size for d in tensor.tensor_shape.dim] != [1, 784]
    ):
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unexpected request")
    with self._lock:
      self._in_flight += 1
      self.max_in_flight = max(self.max_in_flight, self._in_flight)
    time.sleep(self.delay)
    with self._lock:
      self._in_flight -= 1
    digit = mnist_test_util.decode_label(
        np.frombuffer(tensor.tensor_content, dtype="<f4")
    )
    if digit == _WRONG_DIGIT:
      digit = (digit + 1) % 10
    response = predict_pb2.PredictResponse()
    scores = response.outputs["scores"]
    scores.dtype = types_pb2.DT_FLOAT
    scores.tensor_shape.dim.add(size=1)
    scores.tensor_shape.dim.add(size=10)
    scores.float_val.extend(np.eye(10)[digit])
    return response


def _unused_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


class MnistClientTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.work_dir = os.path.join(absltest.get_default_test_tmpdir(), "mnist")
    _, cls.labels = mnist_test_util.write_synthetic_mnist(cls.work_dir)
    cls.service = _FakeMnistService()
    cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        cls.service, cls.server
    )
    cls.address = f"localhost:{cls.server.add_insecure_port('localhost:0')}"
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop(None)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.service.delay = 0.0
    self.service.max_in_flight = 0

  def _expected_error_rate(self, num_tests: int) -> float:
    labels = np.resize(self.labels, num_tests)  # The client wraps around.
    return float(np.mean(labels == _WRONG_DIGIT))

  def test_error_rate(self):
    rate = mnist_client.do_inference(
        self.address, self.work_dir, concurrency=1, num_tests=150
    )
    self.assertGreater(rate, 0)
    self.assertAlmostEqual(rate, self._expected_error_rate(150))
    self.assertEqual(self.service.max_in_flight, 1)

  def test_concurrency_is_bounded(self):
    self.service.delay = 0.05
    rate = mnist_client.do_inference(
        self.address, self.work_dir, concurrency=4, num_tests=24
    )
    self.assertAlmostEqual(rate, self._expected_error_rate(24))
    self.assertBetween(self.service.max_in_flight, 2, 4)

  def test_rpc_error_is_reported(self):
    with self.assertRaisesRegex(
        mnist_client.InferenceError,
        "NOT_FOUND: Servable not found for request: Latest\\(nosuch\\)",
    ):
      mnist_client.do_inference(
          self.address,
          self.work_dir,
          concurrency=3,
          num_tests=10,
          model_name="nosuch",
      )

  def test_unreachable_server(self):
    address = f"localhost:{_unused_port()}"
    with self.assertRaisesRegex(
        mnist_client.InferenceError, f"Could not reach server at {address}"
    ):
      mnist_client.do_inference(
          address,
          self.work_dir,
          concurrency=1,
          num_tests=1,
          connect_timeout=0.5,
      )

  def _run_cli(self, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_ROOT), env.get("PYTHONPATH")) if p
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow_serving.example.mnist_client",
            f"--work_dir={self.work_dir}",
            *args,
        ],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

  def test_cli(self):
    run = self._run_cli(
        f"--server={self.address}", "--num_tests=40", "--concurrency=2"
    )
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn(
        "\nInference error rate: %s%%" % (self._expected_error_rate(40) * 100),
        run.stdout,
    )

    address = f"localhost:{_unused_port()}"
    run = self._run_cli(f"--server={address}", "--connect_timeout=0.5")
    self.assertEqual(run.returncode, 1)
    self.assertIn(f"Could not reach server at {address}", run.stderr)


if __name__ == "__main__":
  absltest.main()
