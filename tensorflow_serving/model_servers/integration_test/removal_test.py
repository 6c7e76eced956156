"""Deleting version directories: fall back to the next one, then to nothing.

The source is stateless: each poll aspires what is on disk, so deleting the
newest version makes the next highest the latest (loaded, then served),
bringing it back loads it afresh, and deleting all of them unloads the model
with upstream's warning.
"""

from __future__ import annotations

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models

State = get_model_status_pb2.ModelVersionStatus.State
TIMEOUT_S = 60.0


class RemovalTest(absltest.TestCase):

  def test_fall_back_then_unload_everything(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    for version in (1, 2, 3):
      publisher.publish(version)

    with lu.serving(base) as server:
      status = lu.StatusClient(server.grpc_address)
      channel = server.channel()
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      request = test_models.predict_request([1.0])
      # Latest policy: only the highest version is loaded.
      self.assertEqual(stub.Predict(request).model_spec.version.value, 3)
      self.assertEqual(set(status.versions()), {3})

      # 1. Without 3, version 2 is the latest: loaded while 3 still serves.
      with lu.ClientLoad(server.grpc_address, num_threads=2) as clients:
        lu.wait_for(lambda: clients.first_served(3), 30, "v3 to serve")
        publisher.remove(3)
        lu.wait_for(
            lambda: clients.first_served(2), TIMEOUT_S, "version 2 to serve"
        )
        lu.wait_for(
            lambda: status.state(3) == State.END,
            TIMEOUT_S,
            "version 3 to unload",
        )
        results = clients.stop()
      fallback_status = status.versions()
      response = stub.Predict(request)

      # 2. Version 3 published again (it was unloaded and forgotten) loads
      # afresh and takes over again.
      publisher.publish(3)
      lu.wait_for(
          lambda: status.state(3) == State.AVAILABLE,
          TIMEOUT_S,
          "version 3 to load again",
      )
      lu.wait_for(
          lambda: status.state(2) == State.END, TIMEOUT_S, "version 2 to unload"
      )
      republished = stub.Predict(request)

      # 3. Without any version the model is unloaded (base path still there).
      publisher.remove(1)  # 1 and 2 are not loaded; 3 goes last.
      publisher.remove(2)
      publisher.remove(3)
      lu.wait_for(
          lambda: status.state(3) == State.END, TIMEOUT_S, "version 3 to unload"
      )
      with self.assertRaises(grpc.RpcError) as ctx:
        stub.Predict(request)
      gone_status = status.versions()
      status.close()
      channel.close()
      log = server.log()

    print(
        f"fallback 3 -> 2 under load: {len(results)} requests, "
        f"{len(lu.failures(results))} failed"
    )
    self.assertEmpty(lu.failures(results), lu.summarize_failures(results))
    self.assertEqual({r.version for r in results}, {2, 3})
    # Once version 2 answered, version 3 never did again.
    self.assertEqual(lu.version_regressions(results, order=lambda v: -v), [])
    self.assertEqual(response.model_spec.version.value, 2)
    self.assertEqual(list(response.outputs["y"].float_val), [3.0])
    self.assertEqual(fallback_status[2].state, State.AVAILABLE)
    self.assertEqual(fallback_status[3].state, State.END)
    self.assertNotIn(1, fallback_status)  # Never aspired: latest is 1 version.
    self.assertEqual(republished.model_spec.version.value, 3)
    self.assertEqual(list(republished.outputs["y"].float_val), [4.0])
    self.assertEqual(
        log.count("Successfully loaded servable version {name: m version: 3}"),
        2,
    )

    self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
    self.assertEqual(
        ctx.exception.details(),
        f"Servable not found for request: Latest({lu.MODEL})",
    )
    self.assertEqual(
        {v: s.state for v, s in gone_status.items()},
        {2: State.END, 3: State.END},
    )
    self.assertIn(
        f"No versions of servable {lu.MODEL} found under base path {base}. "
        "Did you forget to name your leaf directory as a number (eg. '/1/')?",
        log,
    )


if __name__ == "__main__":
  absltest.main()
