"""The v2 repository's load and unload under --num_workers=2, on the real binary.

A load or unload returns only once every worker has applied it: right after
the call, each of many fresh connections (which the kernel spreads over both
workers) finds the model served, or gone. Traffic to the other model meanwhile,
over gRPC and REST from several connections, never fails. The supervisor
keeps what the API changed, so a worker killed after a load or an unload comes
back serving the same models. One server for the class; the tests run in
their numbered order.
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request

from absl.testing import absltest
import grpc
from prometheus_client import mmap_dict
from tritonclient import grpc as triton_grpc
from tritonclient import utils as triton_utils

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import lifecycle_util
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import load
from tensorflow_serving.test_util import model_server

MODEL = lifecycle_util.MODEL  # Configured at start: y = x + 1.
LOADED = "n"  # Loaded through the API: y = x + 5.
# Fresh connections per check: all on one of two workers has odds 2^-23.
_CONNECTIONS = 24
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


def _rest(port: int, method: str, path: str, body: dict | None = None):
  """(HTTP status, JSON reply) over a connection of its own."""
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}{path}",
      data=None if body is None else json.dumps(body).encode(),
      method=method,
      headers={"Connection": "close"},
  )
  try:
    with urllib.request.urlopen(request, timeout=60) as response:
      raw = response.read()
      return response.status, json.loads(raw) if raw else None
  except urllib.error.HTTPError as exc:
    raw = exc.read()
    return exc.code, json.loads(raw) if raw else None


def _grpc_predict(address: str, model: str) -> tuple[str, float | None]:
  """(status code name, y for x=1.0) over a connection of its own."""
  options = [("grpc.use_local_subchannel_pool", 1)]
  with grpc.insecure_channel(address, options=options) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      response = stub.Predict(
          test_models.predict_request([1.0], model_name=model), timeout=30
      )
    except grpc.RpcError as exc:
      return exc.code().name, None
  return "OK", response.outputs["y"].float_val[0]


class ModelControlWorkersTest(absltest.TestCase):
  server: model_server.ModelServer
  base_path: str
  metrics_dir: str

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base_path = base_path = lifecycle_util.new_base_path()
    test_models.Publisher(base_path).publish(1)
    cls.loaded_base = os.path.join(binaries.test_tmpdir(), LOADED)
    test_models.Publisher(cls.loaded_base).publish(5)
    monitoring = os.path.join(binaries.test_tmpdir(), "monitoring.config")
    with open(monitoring, "w", encoding="utf-8") as f:
      f.write("prometheus_config { enable: true }\n")
    cls.server = model_server.start_server(
        lifecycle_util.server_args(
            base_path,
            "--num_workers=2",
            "--enable_model_control_api",
            f"--monitoring_config_file={monitoring}",
        ),
        log_dir=os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or None,
    )
    print(f"server log: {cls.server.log_path}")
    cls.wait_for_log(r"All 2 model server workers are serving", 1)
    cls.metrics_dir = re.search(
        r"their metrics are kept in (\S+)\)", cls.server.log()
    ).group(1)
    cls.triton = triton_grpc.InferenceServerClient(cls.server.grpc_address)

  @classmethod
  def tearDownClass(cls):
    cls.triton.close()
    cls.server.stop()
    super().tearDownClass()

  @classmethod
  def wait_for_log(cls, pattern: str, count: int, timeout_s: float = 120):
    def seen() -> bool:
      if cls.server.proc.poll() is not None:
        raise AssertionError(f"server exited:\n{cls.server.log()}")
      return len(re.findall(pattern, cls.server.log())) >= count

    lifecycle_util.wait_for(seen, timeout_s, f"{count} x {pattern!r}", 0.1)

  def worker_pids(self) -> dict[int, int]:
    """Slot -> pid of the newest process started in it."""
    return {
        int(slot): int(pid)
        for slot, pid in re.findall(
            r"Started model server worker (\d+) \(pid (\d+)\)",
            self.server.log(),
        )
    }

  def pids_that_served(self, model: str) -> set[int]:
    """Live worker processes that counted a request for `model`."""
    pids = set()
    for path in glob.glob(os.path.join(self.metrics_dir, "counter_*.db")):
      owner = os.path.basename(path)[len("counter_") : -len(".db")]
      for key, value, _, _ in mmap_dict.MmapedDict.read_all_values_from_file(
          path
      ):
        metric, _, labels, _ = json.loads(key)
        if (
            owner.isdigit()
            and value > 0
            and metric == ":tensorflow:serving:request_count"
            and labels["model_name"] == model
        ):
          pids.add(int(owner))
    return pids

  def probe(self) -> tuple[load.GrpcLoad, load.RestLoad]:
    """Predict on MODEL from 4 gRPC and 4 REST connections."""
    return (
        load.GrpcLoad(
            self.server.grpc_address, test_models.predict_request([1.0]), 4
        ),
        load.RestLoad(
            self.server.rest_port,
            f"/v1/models/{MODEL}:predict",
            {"instances": [1.0]},
            4,
        ),
    )

  def assert_probe_clean(self, grpc_load, rest_load) -> None:
    print(
        f"probe: gRPC {grpc_load.ok} ok, {len(grpc_load.failures)} failed "
        f"{grpc_load.failures[:2]}; REST {rest_load.ok} ok, "
        f"{len(rest_load.failures)} failed {rest_load.failures[:2]}"
    )
    self.assertEqual(grpc_load.failures, [])
    self.assertEqual(rest_load.failures, [])
    self.assertGreater(grpc_load.ok, 0)
    self.assertGreater(rest_load.ok, 0)

  def assert_served_by_every_worker(self, model: str, y: float) -> None:
    port = self.server.rest_port
    for _ in range(_CONNECTIONS):
      status, reply = _rest(
          port, "POST", f"/v1/models/{model}:predict", {"instances": [1.0]}
      )
      self.assertEqual((status, reply), (200, {"predictions": [y]}))
      self.assertEqual(
          _grpc_predict(self.server.grpc_address, model), ("OK", y)
      )
    self.assertEqual(
        self.pids_that_served(model), set(self.worker_pids().values())
    )

  def assert_gone_from_every_worker(self, model: str) -> None:
    port = self.server.rest_port
    for _ in range(_CONNECTIONS):
      status, reply = _rest(
          port, "POST", f"/v1/models/{model}:predict", {"instances": [1.0]}
      )
      self.assertEqual(status, 404, reply)
      self.assertEqual(
          _grpc_predict(self.server.grpc_address, model)[0], "NOT_FOUND"
      )

  def test_1_a_load_is_served_by_every_worker_when_it_returns(self):
    grpc_load, rest_load = self.probe()
    with grpc_load, rest_load:
      time.sleep(1.0)
      started = time.monotonic()
      status, reply = _rest(
          self.server.rest_port,
          "POST",
          f"/v2/repository/models/{LOADED}/load",
          {"parameters": {"config": {"base_path": self.loaded_base}}},
      )
      took = time.monotonic() - started
      self.assertEqual((status, reply), (200, None))
      # At once, with no wait: every worker serves it.
      self.assert_served_by_every_worker(LOADED, 6.0)
      time.sleep(0.5)
    print(f"load of {LOADED} returned in {took:.2f} s")
    self.assert_probe_clean(grpc_load, rest_load)
    # The merged GetModelStatus and /v1/models/{m} say so.
    with grpc.insecure_channel(self.server.grpc_address) as channel:
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = LOADED
      response = model_service_pb2_grpc.ModelServiceStub(
          channel
      ).GetModelStatus(request, timeout=30)
    self.assertEqual(
        [(v.version, v.state) for v in response.model_version_status],
        [(5, _AVAILABLE)],
    )
    for _ in range(4):
      status, reply = _rest(
          self.server.rest_port, "GET", f"/v1/models/{LOADED}"
      )
      self.assertEqual(status, 200)
      self.assertEqual(
          [(v["version"], v["state"]) for v in reply["model_version_status"]],
          [("5", "AVAILABLE")],
      )
    self.assertTrue(self.triton.is_model_ready(LOADED, "5"))

  def test_2_a_worker_killed_after_a_load_comes_back_serving_it(self):
    serving = len(re.findall(r"is serving", self.server.log()))
    victim = self.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    self.wait_for_log(r"is serving", serving + 1)
    self.assertNotEqual(self.worker_pids()[0], victim)
    self.assertIn(
        f"Model server worker 0 (pid {victim}) was killed by SIGKILL",
        self.server.log(),
    )
    self.assert_served_by_every_worker(LOADED, 6.0)
    self.assert_served_by_every_worker(MODEL, 2.0)

  def test_3_errors_have_the_single_server_codes(self):
    port = self.server.rest_port
    status, reply = _rest(
        port,
        "POST",
        "/v2/repository/models/x/load",
        {"parameters": {"config": {"base_path": "/no/such/dir"}}},
    )
    self.assertEqual(status, 400)
    self.assertIn("/no/such/dir", reply["error"])
    status, reply = _rest(port, "POST", "/v2/repository/models/x/unload", {})
    self.assertEqual(status, 404)
    self.assertEqual(reply, {"error": "Model x is not being served"})
    with self.assertRaises(triton_utils.InferenceServerException) as caught:
      self.triton.unload_model("x")
    self.assertEqual(caught.exception.status(), "StatusCode.NOT_FOUND")

  def test_4_an_unload_is_gone_from_every_worker_when_it_returns(self):
    grpc_load, rest_load = self.probe()
    with grpc_load, rest_load:
      time.sleep(1.0)
      self.triton.unload_model(LOADED, client_timeout=120)
      self.assert_gone_from_every_worker(LOADED)
      time.sleep(0.5)
    self.assert_probe_clean(grpc_load, rest_load)
    self.assertFalse(self.triton.is_model_ready(LOADED))
    # A worker started now serves without it.
    serving = len(re.findall(r"is serving", self.server.log()))
    os.kill(self.worker_pids()[1], signal.SIGKILL)
    self.wait_for_log(r"is serving", serving + 1)
    self.assert_gone_from_every_worker(LOADED)
    self.assertEqual(
        _rest(
            self.server.rest_port,
            "POST",
            f"/v1/models/{MODEL}:predict",
            {"instances": [1.0]},
        ),
        (200, {"predictions": [2.0]}),
    )

  def test_5_a_whole_config_reload_forgets_the_apis_loads_everywhere(self):
    status, _ = _rest(
        self.server.rest_port,
        "POST",
        f"/v2/repository/models/{LOADED}/load",
        {"parameters": {"config": {"base_path": self.loaded_base}}},
    )
    self.assertEqual(status, 200)
    self.assert_served_by_every_worker(LOADED, 6.0)
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.add(
        name=MODEL, base_path=self.base_path, model_platform="tensorflow"
    )
    with grpc.insecure_channel(self.server.grpc_address) as channel:
      response = model_service_pb2_grpc.ModelServiceStub(
          channel
      ).HandleReloadConfigRequest(request, timeout=120)
    self.assertEqual(response.status.error_code, 0)

    # Upstream's whole-config semantics: LOADED is no longer configured (a
    # reload returns once added models load, not once removed ones unload).
    def gone() -> bool:
      return all(
          _rest(
              self.server.rest_port,
              "POST",
              f"/v1/models/{LOADED}:predict",
              {"instances": [1.0]},
          )[0]
          == 404
          for _ in range(_CONNECTIONS)
      )

    lifecycle_util.wait_for(gone, 60, f"{LOADED} unloaded everywhere", 0.2)
    self.assert_gone_from_every_worker(LOADED)
    self.assert_served_by_every_worker(MODEL, 2.0)

  def test_6_sigterm_stops_every_worker(self):
    self.server.proc.send_signal(signal.SIGTERM)
    self.assertEqual(self.server.proc.wait(60), 0)
    self.assertLen(re.findall(r"exited with code 0", self.server.log()), 2)


if __name__ == "__main__":
  absltest.main()
