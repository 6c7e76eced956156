"""--total_model_memory_limit_bytes: loads are admitted against a RAM budget.

Each version is estimated at 1.2 x its directory size. A version that does
not fit is refused with RESOURCE_EXHAUSTED "Insufficient resources to load
servable", at start-up (the server exits) or later (visible through
GetModelStatus, while the loaded version keeps serving). A budget for one
version fits swaps only when the old version goes first (resource_preserving).
"""

from __future__ import annotations

import os
import subprocess

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.util import status as status_lib

State = get_model_status_pb2.ModelVersionStatus.State
RAM_ESTIMATE_FACTOR = 1.2
TIMEOUT_S = 60.0


def _estimate(version_dir: str) -> int:
  return int(
      test_models.directory_size_bytes(version_dir) * RAM_ESTIMATE_FACTOR
  )


class MemoryBudgetTest(absltest.TestCase):

  def test_budget_below_one_model_fails_start_up(self):
    base = lu.new_base_path()
    test_models.Publisher(base).publish(1)
    budget = _estimate(os.path.join(base, "1")) // 2
    server = lu.start_server(
        lu.server_args(
            base,
            f"--total_model_memory_limit_bytes={budget}",
            "--max_num_load_retries=0",
        )
    )
    try:
      returncode = server.proc.wait(TIMEOUT_S * 2)
    except subprocess.TimeoutExpired:
      server.stop()
      self.fail(f"server did not exit:\n{server.log()}")
    log = server.log()
    print(
        f"budget {budget} B < estimate: exit code {returncode}; "
        + next(
            line
            for line in log.splitlines()
            if line.startswith("Failed to start server")
        )
    )
    self.assertNotEqual(returncode, 0, log)
    self.assertIn("Failed to start server. Error: ", log)
    self.assertIn(
        "Insufficient resources to load servable " "{name: m version: 1}", log
    )
    self.assertNotIn("Loading servable version", log)  # Refused up front.

  def _swap_under_one_version_budget(self, *flags: str):
    """Serves version 1 under a budget of 1.5 versions, then publishes 2."""
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    publisher.stage(2)
    budget = int(_estimate(os.path.join(base, "1")) * 1.5)
    with lu.serving(
        base, f"--total_model_memory_limit_bytes={budget}", *flags
    ) as server:
      status = lu.StatusClient(server.grpc_address)
      channel = server.channel()
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      publisher.publish(2)
      lu.wait_for(
          lambda: status.state(2) in (State.END, State.AVAILABLE),
          TIMEOUT_S,
          "version 2 to settle",
      )
      # Let the manager act on what it settled to (e.g. unload version 1).
      lu.wait_for(
          lambda: status.state(1) in (State.AVAILABLE, State.END),
          TIMEOUT_S,
          "version 1 to settle",
      )
      response = stub.Predict(test_models.predict_request([1.0]), timeout=10)
      versions = status.versions()
      status.close()
      channel.close()
      log = server.log()
    return budget, versions, response, log

  def test_availability_preserving_cannot_swap_in_one_version_budget(self):
    budget, versions, response, log = self._swap_under_one_version_budget()
    print(
        f"availability_preserving, budget {budget} B: version 2 "
        f"{versions[2].state_name} error {versions[2].error_code}: "
        f"{versions[2].error_message!r}; version 1 "
        f"{versions[1].state_name}"
    )
    self.assertEqual(versions[2].state, State.END)
    self.assertEqual(
        versions[2].error_code, int(status_lib.Code.RESOURCE_EXHAUSTED)
    )
    self.assertEqual(
        versions[2].error_message,
        "Insufficient resources to load servable " "{name: m version: 2}",
    )
    self.assertEqual(versions[1].state, State.AVAILABLE)
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertNotIn("Loading servable version {name: m version: 2}", log)

  def test_resource_preserving_swaps_in_one_version_budget(self):
    budget, versions, response, _ = self._swap_under_one_version_budget(
        "--aspired_version_policy=resource_preserving"
    )
    print(
        f"resource_preserving, budget {budget} B: version 1 "
        f"{versions[1].state_name}, version 2 {versions[2].state_name}"
    )
    self.assertEqual(versions[2].state, State.AVAILABLE)
    self.assertEqual(versions[2].error_code, 0)
    self.assertEqual(versions[1].state, State.END)
    self.assertEqual(response.model_spec.version.value, 2)


if __name__ == "__main__":
  absltest.main()
