"""An unload waits for the requests still holding the version.

A request takes a handle on the version it runs on; the manager withdraws an
unloading version from new requests at once but tears it down only after the
last handle is released. A long request on the old version must therefore
finish with the old version's answer while the new version already serves.
"""

from __future__ import annotations

import concurrent.futures
import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models

State = get_model_status_pb2.ModelVersionStatus.State
# Long enough for the new version to be found (1 s poll) and loaded while the
# request still runs, on a busy 2-core machine.
SLOW_REQUEST_S = 4.5
X = 10.0


class HandlesTest(absltest.TestCase):

  def _run(self, swap: str) -> None:
    """Holds version 1 with a slow request while `swap` replaces it."""
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.publish(1)
    publisher.stage(2)
    with lu.serving(base) as server:
      status = lu.StatusClient(server.grpc_address)
      channel = server.channel()
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      slow = test_models.predict_request(
          [X], signature=test_models.SLOW_SIGNATURE, seconds=SLOW_REQUEST_S
      )
      fast = test_models.predict_request([X])
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = time.time()
        future = pool.submit(stub.Predict, slow, timeout=60)
        time.sleep(0.5)  # Let it take its handle on version 1.
        publisher.publish(2)
        if swap == "remove":
          publisher.remove(1)
        # Version 2 serves and version 1 is withdrawn, but not unloaded.
        lu.wait_for(
            lambda: status.state(1) == State.UNLOADING,
            30,
            "version 1 to start unloading",
        )
        new_reply = stub.Predict(fast, timeout=10)
        mid_log = server.log()
        in_flight = not future.done()
        response = future.result()
        replied = time.time()
      lu.wait_for(
          lambda: status.state(1) == State.END,
          30,
          "version 1 to finish unloading",
      )
      status.close()
      channel.close()
      log = server.log()

    events = lu.lifecycle_events(log)
    quiescing = lu.event_time(events, "Quiescing", 1)
    done_quiescing = lu.event_time(events, "Done quiescing", 1)
    unloaded = lu.event_time(events, "Done unloading", 1)
    print(
        f"[{swap}] slow request on version 1: {replied - sent:.2f} s; "
        f"version 1 quiescing from +{quiescing - sent:.2f} s to "
        f"+{done_quiescing - sent:.2f} s, unloaded at "
        f"+{unloaded - sent:.2f} s; reply at +{replied - sent:.2f} s"
    )

    self.assertTrue(in_flight, "the slow request ended before the swap")
    self.assertEqual(new_reply.model_spec.version.value, 2)
    self.assertEqual(list(new_reply.outputs["y"].float_val), [X + 2])
    self.assertIn("Quiescing servable version {name: m version: 1}", mid_log)
    self.assertNotIn(
        "Done quiescing servable version {name: m version: 1}", mid_log
    )
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertEqual(list(response.outputs["y"].float_val), [X + 1])
    self.assertGreaterEqual(replied - sent, SLOW_REQUEST_S)
    # The unload waited for the request: quiescing spans its remaining run.
    self.assertGreaterEqual(done_quiescing - sent, SLOW_REQUEST_S - 0.5)
    self.assertLess(quiescing, done_quiescing)
    self.assertLessEqual(done_quiescing, unloaded)

  def test_new_version_waits_for_request_on_old(self):
    self._run("publish")

  def test_removed_version_waits_for_request(self):
    self._run("remove")


if __name__ == "__main__":
  absltest.main()
