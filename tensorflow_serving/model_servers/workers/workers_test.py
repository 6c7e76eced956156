"""--num_workers=2 of the real binary: one port pair, coherent, whole, stoppable.

One server for the whole class; the tests run in their numbered order (the
last one stops it). Which worker answered is read from prometheus_client's
per-process files, which the supervisor names in its log.
S3TwoWorkersTest runs the same tests with the versions in an S3 bucket
(moto's S3 server on loopback), each worker keeping its own model cache
under one --model_cache_dir.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from absl.testing import absltest
import grpc
from prometheus_client import mmap_dict

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import lifecycle_util
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import load
from tensorflow_serving.test_util import model_server
from tensorflow_serving.test_util import s3_server

MODEL = lifecycle_util.MODEL
_REQUEST_COUNT = ":tensorflow:serving:request_count"


def _predict_on_new_connection(port: int, model: str) -> float:
  """y for x=1.0 over a connection of its own (so any worker may take it)."""
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}/v1/models/{model}:predict",
      data=json.dumps({"instances": [1.0]}).encode(),
      headers={"Connection": "close"},
  )
  with urllib.request.urlopen(request, timeout=30) as response:
    return json.loads(response.read())["predictions"][0]


def _get_on_new_connection(port: int, path: str) -> dict:
  """A GET's JSON over a connection of its own (so any worker may take it)."""
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"}
  )
  with urllib.request.urlopen(request, timeout=30) as response:
    return json.loads(response.read())


# A stalled worker is replaced past this (--worker_health_timeout_seconds).
HEALTH_TIMEOUT_S = 2.0


class TwoWorkersTest(absltest.TestCase):
  server: model_server.ModelServer
  base_path: str
  publisher: test_models.Publisher | s3_server.Publisher
  extra_args: list[str]
  metrics_dir: str

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.set_up_model_store()
    cls.publisher.publish(1)
    cls.publisher.stage(2)
    monitoring = os.path.join(binaries.test_tmpdir(), "monitoring.config")
    with open(monitoring, "w", encoding="utf-8") as f:
      f.write("prometheus_config { enable: true }\n")
    cls.server = model_server.start_server(
        lifecycle_util.server_args(
            cls.base_path,
            "--num_workers=2",
            f"--monitoring_config_file={monitoring}",
            f"--worker_health_timeout_seconds={HEALTH_TIMEOUT_S}",
            *cls.extra_args,
        ),
        log_dir=os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or None,
    )
    print(f"server log: {cls.server.log_path}")
    cls.wait_for_log(r"All 2 model server workers are serving", 1)
    cls.metrics_dir = re.search(
        r"their metrics are kept in (\S+)\)", cls.server.log()
    ).group(1)

  @classmethod
  def set_up_model_store(cls) -> None:
    cls.base_path = lifecycle_util.new_base_path()
    cls.publisher = test_models.Publisher(cls.base_path)
    cls.extra_args = []

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  @classmethod
  def wait_for_log(cls, pattern: str, count: int, timeout_s: float = 120):
    return lifecycle_util.wait_for(
        lambda: len(re.findall(pattern, cls.server.log())) >= count
        or cls._exited(),
        timeout_s,
        f"{count} x {pattern!r} in the log",
        interval_s=0.1,
    )

  @classmethod
  def _exited(cls) -> bool:
    if cls.server.proc.poll() is not None:
      raise AssertionError(f"server exited:\n{cls.server.log()}")
    return False

  def worker_pids(self) -> dict[int, int]:
    """Slot -> pid of the newest process started in it."""
    return {
        int(slot): int(pid)
        for slot, pid in re.findall(
            r"Started model server worker (\d+) \(pid (\d+)\)",
            self.server.log(),
        )
    }

  def grpc_counts_by_pid(self) -> dict[int, float]:
    """Successful gRPC requests per live worker process."""
    counts: dict[int, float] = collections.defaultdict(float)
    for path in glob.glob(os.path.join(self.metrics_dir, "histogram_*.db")):
      owner = os.path.basename(path)[len("histogram_") : -len(".db")]
      if not owner.isdigit():
        continue
      for key, value, _, _ in mmap_dict.MmapedDict.read_all_values_from_file(
          path
      ):
        metric, name, labels, _ = json.loads(key)
        if (
            metric == ":tensorflow:serving:request_latency"
            # Files hold each bucket's own count, not the running total.
            and name.endswith("_bucket")
            and labels["entrypoint"] == "GRPC"
        ):
          counts[int(owner)] += value
    return dict(counts)

  def counts_by_pid(self, model: str = MODEL) -> dict[str, float]:
    """request_count per process file (pid, or 'retired')."""
    counts: dict[str, float] = collections.defaultdict(float)
    for path in glob.glob(os.path.join(self.metrics_dir, "counter_*.db")):
      owner = os.path.basename(path)[len("counter_") : -len(".db")]
      for key, value, _, _ in mmap_dict.MmapedDict.read_all_values_from_file(
          path
      ):
        metric, _, labels, _ = json.loads(key)
        if metric == _REQUEST_COUNT and labels["model_name"] == model:
          counts[owner] += value
    return dict(counts)

  def scrape(self) -> str:
    url = f"{self.server.rest_url}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
      return response.read().decode()

  def scraped_total(self, model: str = MODEL) -> float:
    return sum(
        float(value)
        for value in re.findall(
            rf'^{_REQUEST_COUNT}{{model_name="{model}",status="[A-Z_]+"}} (\S+)$',
            self.scrape(),
            re.MULTILINE,
        )
    )

  def test_1_both_workers_serve_one_port_pair_and_one_scrape_sums_them(self):
    before = sum(self.counts_by_pid().values())
    for _ in range(40):
      self.assertEqual(
          _predict_on_new_connection(self.server.rest_port, MODEL), 2.0
      )
    by_pid = self.counts_by_pid()
    live = {str(pid) for pid in self.worker_pids().values()}
    self.assertEqual(set(by_pid) - {"retired"}, live)
    # New connections land on both workers (2^-39 odds against, by chance).
    self.assertTrue(all(by_pid[pid] > 0 for pid in live), by_pid)
    self.assertEqual(sum(by_pid.values()) - before, 40)
    # Any worker's scrape counts both; the scrape itself is no request.
    self.assertEqual(self.scraped_total(), sum(by_pid.values()))
    self.assertIn(f"# TYPE {_REQUEST_COUNT} counter", self.scrape())
    # The status page, answered by either worker, counts both and says 2.
    for _ in range(4):
      with urllib.request.urlopen(
          urllib.request.Request(
              f"{self.server.rest_url}/v1/status",
              headers={"Connection": "close"},
          ),
          timeout=30,
      ) as response:
        page = json.loads(response.read())
      self.assertEqual(page["server"]["workers"], 2)
      (model,) = [m for m in page["models"] if m["name"] == MODEL]
      self.assertEqual(
          model["traffic"]["totals"]["requests"], sum(by_pid.values())
      )

  def test_2_a_new_version_reaches_every_worker_as_status_says(self):
    status = lifecycle_util.StatusClient(self.server.grpc_address)
    try:
      self.publisher.publish(2)
      lifecycle_util.wait_for(
          lambda: status.state(2)
          == lifecycle_util.ModelVersionStatus.AVAILABLE,
          60,
          "version 2 AVAILABLE in the merged GetModelStatus",
      )
      # AVAILABLE there means AVAILABLE in every worker: no connection may
      # still be served version 1 by a worker that lags behind.
      answers = {
          _predict_on_new_connection(self.server.rest_port, MODEL)
          for _ in range(24)
      }
      self.assertEqual(answers, {3.0})
      # Whichever worker answers, the REST listing, the model's status and
      # readiness read the merged view that gRPC GetModelStatus gives.
      port = self.server.rest_port

      def settled() -> bool:
        # The merged state of version 1 may read END while a lagging worker
        # has yet to start its unload; a second of END means all are done.
        for _ in range(10):
          if status.state(1) != lifecycle_util.ModelVersionStatus.END:
            return False
          time.sleep(0.1)
        return True

      lifecycle_util.wait_for(settled, 60, "version 1 unloaded by every worker")
      merged = [
          (str(v), lifecycle_util.ModelVersionStatus.State.Name(s.state))
          for v, s in sorted(status.versions().items(), reverse=True)
      ]
      for _ in range(12):
        one = _get_on_new_connection(port, f"/v1/models/{MODEL}")
        listing = _get_on_new_connection(port, "/v1/models")
        self.assertEqual(listing, {"models": [{"name": MODEL, **one}]})
        self.assertEqual(
            [(v["version"], v["state"]) for v in one["model_version_status"]],
            merged,
        )
        self.assertEqual(
            _get_on_new_connection(port, "/v1/health/ready"),
            {"status": "ready", "models": [MODEL]},
        )
    finally:
      status.close()

  def test_3_kill_9_under_load_fails_only_requests_in_flight(self):
    restarts = len(re.findall(r"is serving", self.server.log()))
    grpc_load = load.GrpcLoad(
        self.server.grpc_address, test_models.predict_request([1.0]), 4
    )
    rest_load = load.RestLoad(
        self.server.rest_port,
        f"/v1/models/{MODEL}:predict",
        {"instances": [1.0, 2.0]},
        2,
    )
    with grpc_load, rest_load:
      time.sleep(2.0)
      # The worker with the most gRPC traffic: some calls are in flight.
      served = self.grpc_counts_by_pid()
      victim = max(served, key=served.get)
      slot = {pid: s for s, pid in self.worker_pids().items()}[victim]
      os.kill(victim, signal.SIGKILL)
      killed = time.monotonic()
      ok_at_kill = grpc_load.ok, rest_load.ok
      self.wait_for_log(r"is serving", restarts + 1)
      replaced = time.monotonic()
      time.sleep(2.0)  # Load goes on, on the survivor and the replacement.
    print(
        f"kill -9 of worker {slot} (pid {victim}; gRPC calls served by pid: "
        f"{served}): replaced in {replaced - killed:.1f} s; gRPC "
        f"{grpc_load.ok} ok, {len(grpc_load.failures)} failed "
        f"{[m for _, _, m in grpc_load.failures][:4]}; REST {rest_load.ok} ok, "
        f"{len(rest_load.failures)} failed "
        f"{[m for _, _, m in rest_load.failures][:2]}"
    )
    self.assertNotEqual(self.worker_pids()[slot], victim)
    # Only calls sent on connections to the killed worker fail, as it dies:
    # the one in flight, and at most one more that grpcio sends before it
    # sees the connection reset. Reconnects are never refused or reset.
    for _, ended, message in grpc_load.failures:
      self.assertStartsWith(message, "UNAVAILABLE: Stream removed")
      self.assertBetween(ended - killed, -0.1, 2.0)
    per_channel = collections.Counter(c for c, _, _ in grpc_load.failures)
    self.assertLessEqual(max(per_channel.values(), default=0), 2, per_channel)
    for _, ended, message in rest_load.failures:
      self.assertRegex(message, "RemoteDisconnected|ConnectionResetError")
      self.assertBetween(ended - killed, -0.1, 2.0)
    self.assertLessEqual(len(rest_load.failures), 2, rest_load.failures)
    self.assertGreater(grpc_load.ok, ok_at_kill[0])
    self.assertGreater(rest_load.ok, ok_at_kill[1])
    # The dead worker's counts stay in the scrape.
    self.assertIn("retired", self.counts_by_pid())
    self.assertEqual(self.scraped_total(), sum(self.counts_by_pid().values()))

  def test_4_a_reload_returns_once_every_worker_serves_it(self):
    applied = len(re.findall(r"applied a new model config", self.server.log()))
    request = model_management_pb2.ReloadConfigRequest()
    for name in (MODEL, "m2"):
      request.config.model_config_list.config.add(
          name=name, base_path=self.base_path, model_platform="tensorflow"
      )
    with grpc.insecure_channel(self.server.grpc_address) as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      response = stub.HandleReloadConfigRequest(request, timeout=120)
      self.assertEqual(response.status.error_code, 0)
      self.assertEqual(
          len(re.findall(r"applied a new model config", self.server.log())),
          applied + 2,
      )
      # m2 is a new model: each worker's reload waited until it loaded, so
      # no connection can find it missing now.
      for _ in range(24):
        self.assertEqual(
            _predict_on_new_connection(self.server.rest_port, "m2"), 3.0
        )
      self.assertLen(self.counts_by_pid("m2"), 2)
      # A bad config comes back with the error, as from one server.
      bad = model_management_pb2.ReloadConfigRequest()
      bad.config.model_config_list.config.add(
          name=MODEL, base_path="relative/path", model_platform="tensorflow"
      )
      with self.assertRaises(grpc.RpcError) as caught:
        stub.HandleReloadConfigRequest(bad, timeout=60)
      self.assertEqual(
          caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT
      )
      self.assertIn("to have an absolute path", caught.exception.details())

  def test_5_reloads_of_a_versionless_model_harm_no_one(self):
    empty = os.path.join(binaries.test_tmpdir(), "empty_base")
    os.makedirs(empty, exist_ok=True)

    def config(*extra: str) -> model_management_pb2.ReloadConfigRequest:
      request = model_management_pb2.ReloadConfigRequest()
      request.config.model_config_list.config.add(
          name=MODEL, base_path=self.base_path, model_platform="tensorflow"
      )
      for name in extra:
        request.config.model_config_list.config.add(
            name=name, base_path=empty, model_platform="tensorflow"
        )
      return request

    grpc_load = load.GrpcLoad(
        self.server.grpc_address, test_models.predict_request([1.0]), 2
    )
    rest_load = load.RestLoad(
        self.server.rest_port,
        f"/v1/models/{MODEL}:predict",
        {"instances": [1.0]},
        2,
    )
    with grpc.insecure_channel(self.server.grpc_address) as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      with grpc_load, rest_load:
        # Each adds a model with no version and waits for it, 0.5 s.
        calls = [
            stub.HandleReloadConfigRequest.future(
                config(f"ghost{i}"), timeout=0.5
            )
            for i in range(20)
        ]
        codes = set()
        for call in calls:
          try:
            call.result(timeout=30)
            codes.add("OK")
          except grpc.RpcError as exc:
            codes.add(exc.code().name)
        started = time.monotonic()
        response = stub.HandleReloadConfigRequest(config(), timeout=30)
        corrected_in = time.monotonic() - started
        time.sleep(1.0)
    print(
        f"20 hostile reloads: {sorted(codes)}; correcting reload "
        f"{corrected_in:.2f} s; gRPC {grpc_load.ok} ok, "
        f"{len(grpc_load.failures)} failed; REST {rest_load.ok} ok, "
        f"{len(rest_load.failures)} failed"
    )
    self.assertEqual(codes, {"DEADLINE_EXCEEDED"})
    self.assertEqual(response.status.error_code, 0)
    self.assertLess(corrected_in, 5.0)
    self.assertEqual(grpc_load.failures, [])
    self.assertEqual(rest_load.failures, [])
    self.assertGreater(grpc_load.ok, 0)
    self.assertGreater(rest_load.ok, 0)

  def test_6_a_stalled_worker_is_replaced(self):
    restarts = len(re.findall(r"is serving", self.server.log()))
    pids = self.worker_pids()
    victim = pids[0]
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
      self.wait_for_log(r"is serving", restarts + 1, timeout_s=120)
    finally:
      try:
        os.kill(victim, signal.SIGCONT)
      except ProcessLookupError:
        pass
    replaced = time.monotonic() - stopped
    log = self.server.log()
    print(f"SIGSTOP of worker 0 (pid {victim}): replaced in {replaced:.1f} s")
    self.assertIn(
        f"Model server worker 0 (pid {victim}) did not answer a health "
        f"check within {HEALTH_TIMEOUT_S:.1f} s (stopped or stalled): "
        "killing it",
        log,
    )
    self.assertNotEqual(self.worker_pids()[0], victim)
    with self.assertRaises(ProcessLookupError):
      os.kill(victim, 0)
    for _ in range(8):  # Every slot serves again.
      self.assertGreater(
          _predict_on_new_connection(self.server.rest_port, MODEL), 0.0
      )

  def test_7_sigterm_stops_every_worker(self):
    pids = list(self.worker_pids().values())
    started = time.monotonic()
    self.server.proc.send_signal(signal.SIGTERM)
    self.assertEqual(self.server.proc.wait(60), 0)
    print(f"SIGTERM: all stopped in {time.monotonic() - started:.1f} s")
    for pid in pids:
      with self.assertRaises(ProcessLookupError):
        os.kill(pid, 0)
    self.assertLen(re.findall(r"exited with code 0", self.server.log()), 2)
    self.assertFalse(os.path.exists(self.metrics_dir))


class S3TwoWorkersTest(TwoWorkersTest):
  """The same two workers, their versions in a bucket.

  The store's tests only: killing, stalling or hammering a worker with
  reloads does the same whatever holds the versions, and TwoWorkersTest
  runs those.
  """

  test_3_kill_9_under_load_fails_only_requests_in_flight = None
  test_5_reloads_of_a_versionless_model_harm_no_one = None
  test_6_a_stalled_worker_is_replaced = None

  @classmethod
  def set_up_model_store(cls) -> None:
    cls.store = s3_server.S3Server().start()
    cls.store.client().create_bucket(Bucket="workers")
    cls.base_path = f"s3://workers/{MODEL}"
    cls.publisher = s3_server.Publisher(
        cls.store, "workers", MODEL, test_models.export_versioned
    )
    cls.cache_dir = os.path.join(binaries.test_tmpdir(), "model-cache")
    cls.extra_args = [f"--model_cache_dir={cls.cache_dir}"]
    cls.saved_env = dict(os.environ)
    os.environ.update(cls.store.env())  # Inherited by the server.

  @classmethod
  def tearDownClass(cls):
    try:
      super().tearDownClass()
    finally:
      os.environ.clear()
      os.environ.update(cls.saved_env)
      cls.store.stop()

  def test_2_a_new_version_reaches_every_worker_as_status_says(self):
    super().test_2_a_new_version_reaches_every_worker_as_status_says()
    # Each worker downloaded the version into its own cache directory.
    caches = glob.glob(
        os.path.join(self.cache_dir, "tfs-cache-*", "s3", "workers", MODEL)
    )
    self.assertLen(caches, 2)
    for cache in caches:
      self.assertEqual(os.listdir(cache), ["2"])


class ConfigFileTest(absltest.TestCase):
  """--model_config_file polled by the supervisor; then the supervisor dies."""

  server: model_server.ModelServer

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base_path = lifecycle_util.new_base_path()
    test_models.Publisher(cls.base_path).publish(1)
    cls.config_path = os.path.join(binaries.test_tmpdir(), "models.config")
    cls.write_config([MODEL])
    cls.server = model_server.start_server(
        [
            "--num_workers=2",
            f"--model_config_file={cls.config_path}",
            "--model_config_file_poll_wait_seconds=1",
            "--file_system_poll_wait_seconds=1",
        ],
        log_dir=os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or None,
    )
    lifecycle_util.wait_for(
        lambda: "All 2 model server workers are serving" in cls.server.log()
        or cls.server.proc.poll() is not None,
        120,
        "both workers serving",
    )

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  @classmethod
  def write_config(cls, names) -> None:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{cls.base_path}" '
        'model_platform: "tensorflow" }\n'
        for name in names
    )
    staging = cls.config_path + ".new"
    with open(staging, "w", encoding="utf-8") as f:
      f.write(f"model_config_list {{\n{entries}}}\n")
    os.rename(staging, cls.config_path)

  def test_1_a_changed_config_file_reaches_every_worker(self):
    self.write_config([MODEL, "m2"])

    def m2_everywhere() -> bool:
      try:
        return all(
            _predict_on_new_connection(self.server.rest_port, "m2") == 2.0
            for _ in range(24)
        )
      except urllib.error.HTTPError:
        return False

    lifecycle_util.wait_for(m2_everywhere, 60, "m2 on every worker", 0.2)
    applied = re.findall(
        r"Model server worker (\d) applied a new model config: OK",
        self.server.log(),
    )
    self.assertEqual(set(applied), {"0", "1"})

  def test_2_workers_stop_when_their_supervisor_is_killed(self):
    pids = [
        int(pid)
        for pid in re.findall(
            r"Started model server worker \d+ \(pid (\d+)\)",
            self.server.log(),
        )
    ]
    self.server.proc.kill()
    self.server.proc.wait()
    # Each sees its channel close and stops as if sent SIGTERM.
    lifecycle_util.wait_for(
        lambda: not any(_alive(pid) for pid in pids), 60, "workers to exit"
    )
    self.assertIn("The model server supervisor is gone", self.server.log())


class StartFailureTest(absltest.TestCase):

  def test_a_port_in_use_fails_at_once_as_one_server_fails(self):
    with socket.socket() as taken:
      taken.bind(("0.0.0.0", 0))
      taken.listen(1)
      port = taken.getsockname()[1]
      started = time.monotonic()
      proc = subprocess.run(
          model_server.server_command(
              [
                  f"--port={port}",
                  "--num_workers=2",
                  "--model_name=m",
                  f"--model_base_path={lifecycle_util.new_base_path()}",
              ]
          ),
          capture_output=True,
          text=True,
          env=binaries.subprocess_env(),
          timeout=120,
          check=False,
      )
    self.assertEqual(proc.returncode, 1)
    self.assertIn(
        "Failed to start server. Error: INVALID_ARGUMENT: Failed to "
        "BuildAndStart server: [Errno 98] Address already in use",
        proc.stderr,
    )
    # Before any worker (or TensorFlow) started.
    self.assertNotIn("Started model server worker", proc.stderr)
    self.assertLess(time.monotonic() - started, 30)


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


if __name__ == "__main__":
  absltest.main()
