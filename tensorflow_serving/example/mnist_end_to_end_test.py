"""The basic tutorial, end to end, with the real binaries as a user runs them.

export (mnist_saved_model) -> serve (tensorflow_model_server) -> query
(mnist_client), then a live version upgrade and a REST/gRPC cross-check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request

from absl.testing import absltest
import grpc
import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.example import mnist_input_data
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server

POLL_S = 1
# Upper bound for a new version to be served: one poll period plus loading.
SWAP_DEADLINE_S = POLL_S + 30


def _example_binary(name: str) -> list[str]:
  return binaries.binary_command(
      "tensorflow_serving/example", name, f"tensorflow_serving.example.{name}"
  )


def _export(base: str, version: int, iterations: int) -> None:
  subprocess.run(
      _example_binary("mnist_saved_model")
      + [
          f"--training_iteration={iterations}",
          f"--model_version={version}",
          base,
      ],
      check=True,
      env=binaries.subprocess_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
  )


def _grpc_predict(
    address: str, images: np.ndarray
) -> predict_pb2.PredictResponse:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "mnist"
  request.model_spec.signature_name = "predict_images"
  request.inputs["images"].dtype = 1  # DT_FLOAT
  request.inputs["images"].tensor_shape.dim.add(size=images.shape[0])
  request.inputs["images"].tensor_shape.dim.add(size=images.shape[1])
  request.inputs["images"].float_val.extend(images.ravel().tolist())
  with grpc.insecure_channel(address) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.Predict(request, timeout=30)


class MnistEndToEndTest(absltest.TestCase):

  def test_tutorial(self):
    base = binaries.test_tmpdir() + "/mnist_model"
    _export(base, version=1, iterations=1000)

    with model_server.running_server(
        [
            "--model_name=mnist",
            f"--model_base_path={base}",
            f"--file_system_poll_wait_seconds={POLL_S}",
        ]
    ) as server:
      # 1. The tutorial's client, as typed, reports a trained model's rate.
      client = subprocess.run(
          _example_binary("mnist_client")
          + ["--num_tests=1000", f"--server={server.grpc_address}"],
          env=binaries.subprocess_env(),
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
          timeout=300,
      )
      self.assertEqual(client.returncode, 0, client.stdout)
      match = re.search(r"Inference error rate: ([\d.]+)%", client.stdout)
      self.assertIsNotNone(match, client.stdout)
      error_rate = float(match.group(1))
      print(f"mnist_client --num_tests=1000: error rate {error_rate}%")
      self.assertLessEqual(error_rate, 12.0)

      images = mnist_input_data.read_data_sets(
          "/nonexistent-use-offline"
      ).test.images[:8]

      # 2. REST and gRPC agree on the predictions.
      grpc_scores = np.array(
          _grpc_predict(server.grpc_address, images).outputs["scores"].float_val
      ).reshape(8, 10)
      body = json.dumps(
          {"signature_name": "predict_images", "instances": images.tolist()}
      ).encode()
      with urllib.request.urlopen(
          urllib.request.Request(
              f"{server.rest_url}/v1/models/mnist:predict", data=body
          ),
          timeout=30,
      ) as resp:
        rest_scores = np.array(json.loads(resp.read())["predictions"])
      np.testing.assert_array_equal(
          rest_scores.argmax(axis=1), grpc_scores.argmax(axis=1)
      )
      np.testing.assert_allclose(rest_scores, grpc_scores, rtol=1e-5)

      # 3. A newly exported version is picked up without a restart.
      self.assertEqual(
          _grpc_predict(
              server.grpc_address, images[:1]
          ).model_spec.version.value,
          1,
      )
      # Export elsewhere, then publish with one rename, so the clock starts
      # when the version appears under the base path.
      staging = binaries.test_tmpdir()
      _export(staging, version=2, iterations=100)
      os.rename(os.path.join(staging, "2"), os.path.join(base, "2"))
      exported = time.monotonic()
      while True:
        states = {
            s.version: s.state
            for s in server.model_status("mnist").model_version_status
        }
        if states.get(2) == 30:  # AVAILABLE
          break
        self.assertLess(
            time.monotonic() - exported,
            SWAP_DEADLINE_S,
            f"version 2 not AVAILABLE in time: {states}",
        )
        time.sleep(0.1)
      swap_s = time.monotonic() - exported
      print(f"version 2 AVAILABLE {swap_s:.2f}s after it was published")
      response = _grpc_predict(server.grpc_address, images[:1])
      self.assertEqual(response.model_spec.version.value, 2)
      self.assertEqual(response.model_spec.name, "mnist")
      self.assertEqual(response.model_spec.signature_name, "predict_images")
      # The old version is unloaded once the new one serves.
      deadline = time.monotonic() + 10
      while states.get(1) != 50 and time.monotonic() < deadline:  # END
        time.sleep(0.1)
        states = {
            s.version: s.state
            for s in server.model_status("mnist").model_version_status
        }
      self.assertEqual(states.get(1), 50, states)

      self.assertEqual(server.stop(), 0, server.log())


if __name__ == "__main__":
  absltest.main()
