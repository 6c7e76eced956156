"""The Open Inference Protocol as KServe's own Python clients speak it.

KServe's `InferenceRESTClient` and `InferenceGRPCClient` (the `kserve`
package) are what KServe users and InferenceGraph code call. They cannot
share this project's venv (kserve pins protobuf<7), so tools/setup.sh puts
them in tools/kserve_client/.venv and this test runs kserve_client_check.py
there against the real server, then judges what the clients reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl.testing import absltest

from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models
from tensorflow_serving.test_util import binaries

HALF = test_models.HALF
STRINGS = test_models.STRINGS


def _kserve_python() -> str:
  path = os.path.join(
      binaries.repo_root(), "tools", "kserve_client", ".venv", "bin", "python"
  )
  if not os.path.exists(path):
    raise RuntimeError(
        f"{path} is missing: tools/setup.sh installs KServe's client there"
    )
  return path


class KServeClientTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    repo = cls.class_repo()
    config = repo.write(
        "models.config",
        test_models.model_config_text(
            {
                HALF: repo.base_path(HALF, HALF),
                STRINGS: repo.base_path(STRINGS, STRINGS),
            }
        ),
    )
    server = cls.class_server(repo, [f"--model_config_file={config}"])
    script = os.path.join(os.path.dirname(__file__), "kserve_client_check.py")
    run = subprocess.run(
        [
            _kserve_python(),
            script,
            f"--rest_url=http://localhost:{server.rest_port}",
            f"--grpc_target={server.grpc_address}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    sys.stderr.write(run.stderr[-4000:])
    if run.returncode != 0:
      raise RuntimeError(f"kserve_client_check failed:\n{run.stderr[-4000:]}")
    cls.results = {}
    for line in run.stdout.splitlines():
      record = json.loads(line)
      cls.results[record.pop("check")] = record

  def value(self, check: str):
    record = self.results[check]
    self.assertNotIn("error", record, f"{check}: {record}")
    return record["value"]

  def failure(self, check: str) -> str:
    record = self.results[check]
    self.assertIn("error", record, f"{check} should have failed: {record}")
    return record["message"]

  def test_health_over_rest_and_grpc(self):
    # KServe's REST client reads the spec's {"live"|"ready": bool} bodies.
    for check in (
        "rest live",
        "rest ready",
        "rest model ready",
        "grpc live",
        "grpc ready",
        "grpc model ready",
    ):
      self.assertIs(self.value(check), True, check)
    self.assertIs(self.value("rest model ready unknown"), False)

  def test_infer_over_rest_json_and_binary(self):
    for check in ("rest infer json", "rest infer binary"):
      self.assertEqual(
          self.value(check),
          {"id": "r1", "outputs": {"y": [2.5, 3.0, 3.5]}},
          check,
      )

  def test_infer_over_grpc(self):
    self.assertEqual(
        self.value("grpc infer"),
        {"id": "g1", "outputs": {"y": [2.5, 3.0, 3.5]}},
    )

  def test_bytes_tensors_and_signature_parameter(self):
    for check in ("rest infer bytes", "grpc infer bytes"):
      outputs = self.value(check)["outputs"]
      self.assertEqual(outputs["data_bytes"], ["ab", "xyz"], check)
      self.assertEqual(outputs["size"], [2, 3], check)

  def test_unknown_model_is_an_error_naming_it(self):
    self.assertIn("unknown", self.failure("rest infer unknown model"))
    self.assertIn("404", self.failure("rest infer unknown model"))
    self.assertIn("NOT_FOUND", self.failure("grpc infer unknown model"))


if __name__ == "__main__":
  absltest.main()
