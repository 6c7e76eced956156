"""Start-up: a model that cannot load fails the server; a missing one waits.

The server listens only once every configured model is AVAILABLE. A version
that fails to load makes it exit non-zero, naming the error; a base path that
does not exist yet makes it wait (logging why) and start once it appears.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import model_server

EXIT_TIMEOUT_S = 120.0
# How soon a signal must stop the server, whatever it is doing.
STOP_WITHIN_S = 10.0


class StartupTest(absltest.TestCase):

  def test_corrupt_only_version_fails_start_up(self):
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.stage(1, then=test_models.corrupt_saved_model)
    publisher.publish(1)
    server = lu.start_server(lu.server_args(base, "--max_num_load_retries=0"))
    try:
      returncode = server.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      server.stop()
      self.fail(f"server did not exit:\n{server.log()}")
    log = server.log()
    print(
        f"exit code {returncode}; "
        + next(
            line
            for line in log.splitlines()
            if line.startswith("Failed to start server")
        )
    )

    self.assertNotEqual(returncode, 0, log)
    self.assertIn("Failed to start server. Error: ", log)
    self.assertIn("{name: m version: 1} due to error: ", log)
    self.assertIn(
        f"Can't parse {os.path.join(base, '1', 'saved_model.pb')} as binary "
        "proto",
        log,
    )
    self.assertNotIn("Running gRPC ModelServer", log)
    self.assertNotIn("Retrying load", log)

  def test_missing_base_path_is_awaited(self):
    base = lu.new_base_path()
    server = lu.start_server(lu.server_args(base))
    try:
      missing = f"Could not find base path {base} for servable m"
      lu.wait_for(
          lambda: _alive_log(server).count(missing) >= 2,
          EXIT_TIMEOUT_S,
          "two polls to log the missing base path",
      )
      self.assertIsNone(server.proc.poll(), server.log())
      with server.channel() as channel:
        with self.assertRaises(grpc.FutureTimeoutError):
          grpc.channel_ready_future(channel).result(timeout=0.5)

      # The base path appears whole, with its version (renamed into place).
      staging = base + ".staging"
      test_models.export_versioned(os.path.join(staging, "1"), 1)
      os.rename(staging, base)
      server.wait_until_serving(60)
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(test_models.predict_request([1.0]), timeout=10)
      log = server.log()
    finally:
      server.stop()

    print(
        f"waited through {log.count('Could not find base path')} polls of "
        "a missing base path, then served"
    )
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertEqual(list(response.outputs["y"].float_val), [2.0])
    self.assertIn(
        "Successfully loaded servable version {name: m version: 1}", log
    )


class StartFailureTest(absltest.TestCase):
  """Upstream's one line, `Failed to start server. Error: ...`, and exit 1."""

  def assert_start_fails(self, args, *expected: str) -> str:
    server = lu.start_server(args)
    try:
      returncode = server.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
      server.stop()
      self.fail(f"server did not exit:\n{server.log()}")
    log = server.log()
    self.assertEqual(returncode, 1, log)
    self.assertNotIn("Traceback", log)
    lines = [
        line
        for line in log.splitlines()
        if line.startswith("Failed to start server. Error: ")
    ]
    self.assertLen(lines, 1, log)
    for text in expected:
      self.assertIn(text, lines[0])
    print(lines[0])
    return log

  def test_bad_flag_value(self):
    log = self.assert_start_fails(
        ["--model_base_path=/tmp/x", "--port=not_a_number"],
        "INVALID_ARGUMENT",
        "port",
    )
    # Nothing but that line: no usage text after it.
    self.assertLen(log.strip().splitlines(), 1, log)

  def test_unreadable_model_config_file(self):
    missing = os.path.join(lu.new_base_path(), "nope.config")
    self.assert_start_fails([f"--model_config_file={missing}"], missing)

  def test_port_in_use(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    with socket.socket() as busy:
      busy.bind(("0.0.0.0", 0))
      busy.listen()
      port = busy.getsockname()[1]
      self.assert_start_fails(
          lu.server_args(base, f"--port={port}"), str(port), "in use"
      )


class StopWhileLoadingTest(absltest.TestCase):
  """SIGINT and SIGTERM stop the server in every state, promptly."""

  def stop_during_retry_backoff(self, sig: signal.Signals) -> None:
    base = lu.new_base_path()
    publisher = test_models.Publisher(base)
    publisher.stage(1, then=test_models.corrupt_saved_model)
    publisher.publish(1)
    # Five retries a minute apart: waiting them out would take 5 minutes.
    server = lu.start_server(
        lu.server_args(
            base,
            "--max_num_load_retries=5",
            "--load_retry_interval_micros=60000000",
        )
    )
    try:
      lu.wait_for(
          lambda: "load failure" in _alive_log(server),
          EXIT_TIMEOUT_S,
          "the first failed load attempt",
      )
      sent = time.monotonic()
      server.proc.send_signal(sig)
      returncode = server.proc.wait(STOP_WITHIN_S)
      took = time.monotonic() - sent
    except subprocess.TimeoutExpired:
      server.proc.kill()
      self.fail(f"{sig.name} did not stop the server:\n{server.log()}")
    finally:
      if server.proc.poll() is None:
        server.proc.kill()
    log = server.log()
    print(f"{sig.name} during the retry back-off: exited in {took:.2f} s")
    self.assertEqual(returncode, 0, log)
    self.assertNotIn("Traceback", log)
    self.assertIn("was cancelled", log)  # The back-off ended, no retry ran.
    self.assertNotIn(": retry 1", log)

  def test_sigint_during_retry_backoff(self):
    self.stop_during_retry_backoff(signal.SIGINT)

  def test_sigterm_during_retry_backoff(self):
    self.stop_during_retry_backoff(signal.SIGTERM)

  def test_sigint_while_serving(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    server = lu.start_server(lu.server_args(base))
    try:
      server.wait_until_serving(EXIT_TIMEOUT_S)
      server.proc.send_signal(signal.SIGINT)
      returncode = server.proc.wait(STOP_WITHIN_S)
    finally:
      if server.proc.poll() is None:
        server.proc.kill()
    self.assertEqual(returncode, 0, server.log())
    self.assertIn("Model server stopped.", server.log())


def _alive_log(server: model_server.ModelServer) -> str:
  """The server's log so far; fails at once if the server has exited."""
  if server.proc.poll() is not None:
    raise AssertionError(
        f"server exited with {server.proc.returncode}:\n{server.log()}"
    )
  return server.log()


if __name__ == "__main__":
  absltest.main()
