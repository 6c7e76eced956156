"""Warmup: recorded requests are replayed inside the load, before AVAILABLE.

A version's assets.extra/tf_serving_warmup_requests (TFRecord of
PredictionLog) is run before the version is servable, so the first real
request does not pay for lazy initialisation; a broken file fails the load,
and --enable_model_warmup=false skips the file altogether.
"""

from __future__ import annotations

import os

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models

State = get_model_status_pb2.ModelVersionStatus.State
NUM_FAST_RECORDS = 3
SLOW_RECORD_S = 1.0
TIMEOUT_S = 60.0


def _warmup_requests():
  """Fast records plus one spinning SLOW_RECORD_S, to make warmup visible."""
  requests = [
      test_models.predict_request([float(i)]) for i in range(NUM_FAST_RECORDS)
  ]
  requests.append(
      test_models.predict_request(
          [0.0], signature=test_models.SLOW_SIGNATURE, seconds=SLOW_RECORD_S
      )
  )
  return requests


def _finished_line(base: str, version: int, records: int) -> str:
  path = os.path.join(base, str(version), test_models.WARMUP_RELATIVE_PATH)
  return (
      f"Finished reading warmup data for model at {path}. Number of "
      f"warmup records read: {records}."
  )


class WarmupTest(absltest.TestCase):

  def test_warmup_runs_before_available_and_bad_file_fails_load(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.stage(
        1,
        then=lambda d: test_models.write_warmup_requests(d, _warmup_requests()),
    )
    publisher.publish(1)
    publisher.stage(2, then=test_models.write_garbage_warmup)

    with lu.serving(base, "--max_num_load_retries=0") as server:
      status = lu.StatusClient(server.grpc_address)
      channel = server.channel()
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      publisher.publish(2)
      bad = lu.wait_for(
          lambda: (
              status.versions().get(2) if status.state(2) == State.END else None
          ),
          TIMEOUT_S,
          "version 2 to fail",
      )
      response = stub.Predict(test_models.predict_request([1.0]), timeout=10)
      versions = status.versions()
      status.close()
      channel.close()
      log = server.log()

    events = lu.lifecycle_events(log)
    finished = _finished_line(base, 1, len(_warmup_requests()))
    print(
        f"version 1 load with warmup: {lu.load_seconds(events, 1):.2f} s "
        f"({len(_warmup_requests())} records, one spinning "
        f"{SLOW_RECORD_S} s); bad warmup file: error {bad.error_code}: "
        f"{bad.error_message!r}"
    )

    self.assertIn(finished, log)
    # Replayed inside the load: after "Loading", before it is servable.
    lines = log.splitlines()
    finished_at = next(i for i, line in enumerate(lines) if finished in line)
    self.assertLess(
        next(
            i
            for i, line in enumerate(lines)
            if "Loading servable version {name: m version: 1}" in line
        ),
        finished_at,
    )
    self.assertGreater(
        next(
            i
            for i, line in enumerate(lines)
            if "Successfully loaded servable version {name: m version: 1}"
            in line
        ),
        finished_at,
    )
    self.assertGreaterEqual(lu.load_seconds(events, 1), SLOW_RECORD_S)

    self.assertNotEqual(bad.error_code, 0)
    self.assertIn("warmup", bad.error_message.lower())
    self.assertEqual(versions[1].state, State.AVAILABLE)
    self.assertEqual(response.model_spec.version.value, 1)

  def test_disabled_warmup_skips_the_file(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.stage(1, then=test_models.write_garbage_warmup)
    publisher.publish(1)
    with lu.serving(
        base, "--enable_model_warmup=false", "--max_num_load_retries=0"
    ) as server:
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(test_models.predict_request([1.0]), timeout=10)
      log = server.log()

    self.assertEqual(response.model_spec.version.value, 1)
    self.assertEqual(list(response.outputs["y"].float_val), [2.0])
    self.assertNotIn("warmup data", log)


if __name__ == "__main__":
  absltest.main()
