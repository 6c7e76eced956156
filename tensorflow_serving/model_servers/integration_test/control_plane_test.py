"""No client can hold the server through its control plane; stop always stops.

Against the real binary: 50 reloads naming a model with no version while a
gRPC + REST probe runs (no probe request may fail; a correcting reload
applies at once; SIGTERM still exits within its bound), the server's own
reload bound, a --model_config_file poll that must not block on such a
model, and signals with a request stuck in a model, twice, and at start-up.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server

GHOST = "ghost"
START_S = 120.0
GRACE_S = 3.0
# The drain bound, plus shutdown.CLEANUP_S, plus process exit.
STOP_WITHIN_S = GRACE_S + 5.0 + 5.0


def _config(
    *models: tuple[str, str]
) -> model_server_config_pb2.ModelServerConfig:
  config = model_server_config_pb2.ModelServerConfig()
  for name, base in models:
    config.model_config_list.config.add(
        name=name, base_path=base, model_platform="tensorflow"
    )
  return config


def _reload_request(config) -> model_management_pb2.ReloadConfigRequest:
  return model_management_pb2.ReloadConfigRequest(config=config)


class _Probe:
  """gRPC Predict, REST predict and REST status, one after another, 2 s each."""

  def __init__(self, server: model_server.ModelServer):
    self._server = server
    self._stop = threading.Event()
    self.ok = 0
    self.failures: list[str] = []
    self._thread = threading.Thread(target=self._run, daemon=True)

  def __enter__(self) -> _Probe:
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join(30)

  def _rest(self, method: str, path: str, body: bytes | None = None) -> None:
    conn = http.client.HTTPConnection(
        "localhost", self._server.rest_port, timeout=2
    )
    try:
      conn.request(method, path, body)
      response = conn.getresponse()
      data = response.read()
      if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]}")
    finally:
      conn.close()

  def _run(self) -> None:
    with self._server.channel() as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not self._stop.is_set():
        for name, call in (
            (
                "gRPC Predict",
                lambda: stub.Predict(
                    test_models.predict_request([1.0]), timeout=2
                ),
            ),
            (
                "REST predict",
                lambda: self._rest(
                    "POST",
                    "/v1/models/m:predict",
                    json.dumps({"instances": [1.0]}).encode(),
                ),
            ),
            ("REST status", lambda: self._rest("GET", "/v1/models/m")),
        ):
          try:
            call()
            self.ok += 1
          except Exception as exc:  # pylint: disable=broad-except
            self.failures.append(f"{name}: {exc}")
        time.sleep(0.05)


def _stop_and_time(server: model_server.ModelServer, sig=signal.SIGTERM):
  sent = time.monotonic()
  server.proc.send_signal(sig)
  try:
    code = server.proc.wait(STOP_WITHIN_S)
  except subprocess.TimeoutExpired:
    server.proc.kill()
    raise AssertionError(
        f"{sig.name} did not stop the server within {STOP_WITHIN_S} s:\n"
        f"{server.log()}"
    ) from None
  return code, time.monotonic() - sent


class HostileReloadTest(absltest.TestCase):

  def test_reloads_of_a_versionless_model_harm_no_one(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    empty = os.path.join(binaries.test_tmpdir(), "empty_base")
    os.makedirs(empty)
    server = model_server.start_server(
        lu.server_args(
            base,
            f"--shutdown_grace_seconds={GRACE_S}",
            "--model_config_reload_timeout_seconds=2",
        )
    )
    try:
      server.wait_until_serving(START_S)
      hostile = _reload_request(_config(("m", base), (GHOST, empty)))
      with server.channel() as channel:
        service = model_service_pb2_grpc.ModelServiceStub(channel)
        with _Probe(server) as probe:
          # Each adds a model of its own, so each waits for it: 40 with a
          # short deadline, 10 with none (the server's 2 s bound).
          calls = [
              service.HandleReloadConfigRequest.future(
                  _reload_request(_config(("m", base), (f"{GHOST}{i}", empty))),
                  timeout=0.5 if i < 40 else None,
              )
              for i in range(50)
          ]
          codes = []
          for call in calls:
            try:
              call.result(timeout=30)
              codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
              codes.append(exc.code())
          # A correcting reload applies at once, whatever waits meanwhile.
          still_waiting = service.HandleReloadConfigRequest.future(hostile)
          started = time.monotonic()
          service.HandleReloadConfigRequest(
              _reload_request(_config(("m", base))), timeout=10
          )
          corrected_in = time.monotonic() - started
          # The server's own answer past its maximum names the model.
          with self.assertRaises(grpc.RpcError) as own:
            still_waiting.result(timeout=30)
          service.HandleReloadConfigRequest(
              _reload_request(_config(("m", base))), timeout=10
          )
          time.sleep(1.0)
        config = server.model_status("m")
      print(
          f"probe: {probe.ok} ok, {len(probe.failures)} failed; reload "
          f"codes {sorted({c.name for c in codes})}; correcting reload "
          f"{corrected_in:.2f} s"
      )
      self.assertEqual(probe.failures, [])
      self.assertGreater(probe.ok, 30)
      self.assertEqual(set(codes), {grpc.StatusCode.DEADLINE_EXCEEDED})
      self.assertEqual(own.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
      self.assertIn(
          f"{GHOST} (no version directory found under base path {empty})",
          own.exception.details(),
      )
      self.assertLess(corrected_in, 5.0)
      self.assertEqual(config.model_version_status[0].version, 1)
      with self.assertRaises(grpc.RpcError) as gone:
        server.model_status(f"{GHOST}0")
      self.assertEqual(gone.exception.code(), grpc.StatusCode.NOT_FOUND)

      # A reload still waiting (no deadline) does not hold up SIGTERM.
      with server.channel() as channel:
        service = model_service_pb2_grpc.ModelServiceStub(channel)
        service.HandleReloadConfigRequest.future(hostile)
        time.sleep(0.5)
        code, took = _stop_and_time(server)
      print(f"SIGTERM with a reload waiting: exit {code} in {took:.2f} s")
      self.assertEqual(code, 0, server.log())
      self.assertIn("Model server stopped.", server.log())
    finally:
      if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait()


class ConfigFilePollTest(absltest.TestCase):

  def test_versionless_model_does_not_block_later_edits(self):
    root = binaries.test_tmpdir()
    base = os.path.join(root, "poll_m")
    other = os.path.join(root, "poll_other")
    empty = os.path.join(root, "poll_empty")
    test_models.export_versioned(os.path.join(base, "1"), 1)
    test_models.export_versioned(os.path.join(other, "1"), 7)
    os.makedirs(empty)
    path = os.path.join(root, "models.config")

    def write(*models):
      staging = path + ".new"
      with open(staging, "w", encoding="utf-8") as f:
        f.write(str(_config(*models)))
      os.rename(staging, path)

    write(("m", base))
    server = model_server.start_server(
        [
            f"--model_config_file={path}",
            "--model_config_file_poll_wait_seconds=1",
            "--file_system_poll_wait_seconds=1",
        ],
        rest=False,
    )
    try:
      server.wait_until_serving(START_S)
      write(("m", base), (GHOST, empty))
      waiting = "goes on meanwhile"
      lu.wait_for(lambda: waiting in server.log(), 30, "the waiting line")
      write(("m", base), (GHOST, empty), ("other", other))
      lu.wait_for(
          lambda: _available(server, "other"), 30, "the later edit to apply"
      )
      time.sleep(3.0)  # Three more polls with the ghost still versionless.
      log = server.log()
      # Its first version appears: it loads, and the poll goes on.
      # (Exported aside, then renamed into place whole.)
      staging = os.path.join(root, "ghost_staging")
      test_models.export_versioned(staging, 1)
      os.rename(staging, os.path.join(empty, "1"))
      lu.wait_for(lambda: _available(server, GHOST), 30, "the ghost to load")
      # SIGTERM while the poll reports another model waiting.
      late = os.path.join(root, "poll_late")
      os.makedirs(late)
      write(("m", base), (GHOST, empty), ("late", late))
      lu.wait_for(
          lambda: server.log().count(waiting) == 2, 30, "a second waiting line"
      )
      code, took = _stop_and_time(server)
      print(
          f"SIGTERM with a model awaited by the poll: exit {code} in {took:.2f} s"
      )
      self.assertEqual(code, 0, server.log())
    finally:
      if server.proc.poll() is None:
        server.proc.kill()
    # Reported once, however many polls went by ("other" may be reported
    # too, once, if its load outlasted a poll period).
    about_ghost = (
        f"{GHOST} (no version directory found under base path {empty})"
    )
    lines = [
        line
        for line in log.splitlines()
        if waiting in line and about_ghost in line
    ]
    print(lines[0])
    self.assertLen(lines, 1, log)


def _available(server: model_server.ModelServer, name: str) -> bool:
  try:
    status = server.model_status(name)
  except grpc.RpcError:
    return False
  return any(s.state == s.AVAILABLE for s in status.model_version_status)


class ReadinessTest(absltest.TestCase):

  def test_not_ready_while_no_request_thread_is_free(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    with model_server.running_server(
        lu.server_args(base, "--grpc_max_threads=1"), timeout_s=START_S
    ) as server:

      def ready() -> tuple[int, str]:
        conn = http.client.HTTPConnection(
            "localhost", server.rest_port, timeout=10
        )
        try:
          conn.request("GET", "/v1/health/ready")
          response = conn.getresponse()
          return response.status, response.read().decode()
        finally:
          conn.close()

      self.assertEqual(ready()[0], 200)
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        # The only request thread runs this model for 5 s.
        busy = stub.Predict.future(
            test_models.predict_request(
                [1.0], signature=test_models.SLOW_SIGNATURE, seconds=5.0
            ),
            timeout=60,
        )
        time.sleep(1.0)
        code, body = ready()
        busy.result()
      print(f"ready while the data path is busy: {code} {body.strip()}")
      self.assertEqual(code, 503)
      self.assertIn("No request thread became free within 1 s", body)
      self.assertEqual(ready()[0], 200)


class StopTest(absltest.TestCase):
  """SIGTERM drains up to --shutdown_grace_seconds, then the process exits."""

  def serve_with_stuck_request(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    server = lu.start_server(
        lu.server_args(base, f"--shutdown_grace_seconds={GRACE_S}")
    )
    server.wait_until_serving(START_S)
    channel = server.channel()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    # Runs for 60 s in the model, holding a request thread and its version.
    stuck = stub.Predict.future(
        test_models.predict_request(
            [1.0], signature=test_models.SLOW_SIGNATURE, seconds=60.0
        ),
        timeout=120,
    )
    time.sleep(1.0)
    return server, channel, stuck

  def test_sigterm_with_a_request_stuck_in_a_model(self):
    server, channel, _ = self.serve_with_stuck_request()
    try:
      code, took = _stop_and_time(server)
    finally:
      channel.close()
      if server.proc.poll() is None:
        server.proc.kill()
    print(f"SIGTERM, request stuck for 60 s: exit {code} in {took:.2f} s")
    self.assertEqual(code, 0, server.log())
    self.assertGreaterEqual(took, GRACE_S - 0.5)

  def test_second_signal_exits_at_once(self):
    server, channel, _ = self.serve_with_stuck_request()
    try:
      server.proc.send_signal(signal.SIGTERM)
      time.sleep(0.5)
      code, took = _stop_and_time(server, signal.SIGINT)
    finally:
      channel.close()
      if server.proc.poll() is None:
        server.proc.kill()
    print(f"SIGTERM then SIGINT: exit {code} in {took:.2f} s")
    self.assertEqual(code, 128 + signal.SIGINT, server.log())
    self.assertLess(took, 2.0)
    self.assertIn("SIGINT again: exiting now.", server.log())

  def test_sigterm_while_a_model_loads(self):
    base = lu.new_base_path()
    export = test_models.export_versioned(os.path.join(base, "1"), 1)
    # Warmup keeps the load busy in TensorFlow for 60 s.
    test_models.write_warmup_requests(
        export,
        [
            test_models.predict_request(
                [1.0], signature=test_models.SLOW_SIGNATURE, seconds=60.0
            )
        ],
    )
    server = lu.start_server(
        lu.server_args(base, f"--shutdown_grace_seconds={GRACE_S}")
    )
    try:
      lu.wait_for(
          lambda: "Loading servable version {name: m version: 1}"
          in server.log(),
          START_S,
          "the load to start",
      )
      time.sleep(1.0)
      code, took = _stop_and_time(server)
    finally:
      if server.proc.poll() is None:
        server.proc.kill()
    log = server.log()
    print(f"SIGTERM during a 60 s load: exit {code} in {took:.2f} s")
    self.assertEqual(code, 0, log)
    self.assertNotIn("Running gRPC ModelServer", log)
    self.assertIn("SIGTERM: stopping the model server", log)

  def test_sigint_during_start_up(self):
    base = lu.new_base_path()
    test_models.export_versioned(os.path.join(base, "1"), 1)
    # As `tensorflow_model_server ... &` from a script: SIGINT ignored.
    ignoring = _start_ignoring_sigint(base)
    try:
      lu.wait_for(
          lambda: _catches(ignoring.proc.pid, signal.SIGINT),
          START_S,
          "the server to handle SIGINT",
          interval_s=0.01,
      )
      code, took = _stop_and_time(ignoring, signal.SIGINT)
    finally:
      if ignoring.proc.poll() is None:
        ignoring.proc.kill()
    log = ignoring.log()
    print(f"SIGINT during start-up: exit {code} in {took:.2f} s")
    self.assertEqual(code, 0, log)
    self.assertNotIn("Running gRPC ModelServer", log)
    self.assertRegex(log, "SIGINT (while starting: exiting|: stopping)")


def _start_ignoring_sigint(base: str) -> model_server.ModelServer:
  port = binaries.pick_unused_port()
  log_path = os.path.join(binaries.test_tmpdir(), f"ignoring_{port}.log")
  with open(log_path, "wb") as log:
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        model_server.server_command([f"--port={port}", *lu.server_args(base)]),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=binaries.subprocess_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
  return model_server.ModelServer(proc, port, 0, log_path)


def _catches(pid: int, sig: signal.Signals) -> bool:
  """Whether the process has a handler for `sig` (/proc's SigCgt mask)."""
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("SigCgt:"):
        return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
  return False


if __name__ == "__main__":
  absltest.main()
