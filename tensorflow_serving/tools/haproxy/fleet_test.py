"""Three replicas behind HAProxy, with the recipe's haproxy.cfg unchanged.

Each replica is the real binary serving one shared model base path. Through
the balancer, under gRPC (official grpcio client) and REST load: every
replica gets calls of one gRPC channel; a new version is published and
every replica takes it with no failed request; one replica is killed with
SIGKILL (the balancer routes around it, and retries what it had in flight)
and brought back. The tests run in their numbered order on one fleet.
S3FleetTest runs the same tests with the versions in an S3 bucket (moto's
S3 server on loopback): every replica serves the same versions from it.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import time
import urllib.request

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import lifecycle_util
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import load
from tensorflow_serving.test_util import model_server
from tensorflow_serving.test_util import s3_server

MODEL = lifecycle_util.MODEL
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "haproxy.cfg")
REPLICAS = 3
X = 1.0


def _start_replica(
    base_path: str,
    grpc_port: int,
    rest_port: int,
    log_dir: str,
    env: dict[str, str],
) -> model_server.ModelServer:
  log_path = os.path.join(log_dir, f"replica_{grpc_port}.log")
  with open(log_path, "ab") as log:
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        model_server.server_command(
            lifecycle_util.server_args(
                base_path,
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
            )
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**binaries.subprocess_env(), **env},
    )
  return model_server.ModelServer(proc, grpc_port, rest_port, log_path)


def _check_grpc(response) -> str | None:
  version = response.model_spec.version.value
  y = list(response.outputs["y"].float_val)
  return None if y == [X + version] else f"y={y} from version {version}"


def _check_rest(reply: dict) -> str | None:
  # REST names no version: any published one (1 or 2) is right.
  return None if reply.get("predictions") in ([X + 1], [X + 2]) else str(reply)


class FleetTest(absltest.TestCase):
  replicas: list[model_server.ModelServer]
  replica_env: dict[str, str]
  haproxy: subprocess.Popen

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.log_dir = (
        os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or binaries.test_tmpdir()
    )
    cls.replica_env = cls.set_up_model_store()
    cls.publisher.publish(1)
    cls.publisher.stage(2)
    cls.replicas = [
        _start_replica(
            cls.base_path,
            binaries.pick_unused_port(),
            binaries.pick_unused_port(),
            cls.log_dir,
            cls.replica_env,
        )
        for _ in range(REPLICAS)
    ]
    for replica in cls.replicas:
      replica.wait_until_serving()
    cls.grpc_port = binaries.pick_unused_port()
    cls.rest_port = binaries.pick_unused_port()
    cls.stats_port = binaries.pick_unused_port()
    env = dict(os.environ)
    env.update(
        TFS_LB_ADDRESS="127.0.0.1",
        TFS_LB_GRPC_PORT=str(cls.grpc_port),
        TFS_LB_REST_PORT=str(cls.rest_port),
        TFS_LB_STATS_PORT=str(cls.stats_port),
    )
    for i, replica in enumerate(cls.replicas, start=1):
      env[f"TFS_REPLICA{i}_HOST"] = "127.0.0.1"
      env[f"TFS_REPLICA{i}_GRPC_PORT"] = str(replica.grpc_port)
      env[f"TFS_REPLICA{i}_REST_PORT"] = str(replica.rest_port)
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    subprocess.run([haproxy, "-c", "-q", "-f", CONFIG], env=env, check=True)
    cls.haproxy_log = os.path.join(cls.log_dir, "haproxy.log")
    with open(cls.haproxy_log, "wb") as log:
      cls.haproxy = subprocess.Popen(  # pylint: disable=consider-using-with
          [haproxy, "-db", "-f", CONFIG],
          env=env,
          stdout=log,
          stderr=subprocess.STDOUT,
      )
    lifecycle_util.wait_for(
        lambda: cls.up() == {"tfs_grpc": 3, "tfs_rest": 3},
        30,
        "every replica UP in HAProxy",
        interval_s=0.2,
    )

  @classmethod
  def set_up_model_store(cls) -> dict[str, str]:
    """Sets base_path and publisher; returns the replicas' extra env."""
    cls.base_path = lifecycle_util.new_base_path()
    cls.publisher = test_models.Publisher(cls.base_path)
    return {}

  @classmethod
  def tearDownClass(cls):
    cls.haproxy.terminate()
    cls.haproxy.wait(30)
    for replica in cls.replicas:
      replica.stop()
    super().tearDownClass()

  @classmethod
  def stats(cls) -> list[dict[str, str]]:
    url = f"http://127.0.0.1:{cls.stats_port}/stats;csv"
    with urllib.request.urlopen(url, timeout=10) as response:
      text = response.read().decode().lstrip("# ")
    return [
        row
        for row in csv.DictReader(io.StringIO(text))
        if row["svname"] not in ("FRONTEND", "BACKEND")
    ]

  @classmethod
  def up(cls) -> dict[str, int]:
    if cls.haproxy.poll() is not None:
      with open(cls.haproxy_log, encoding="utf-8") as f:
        raise AssertionError(f"haproxy exited:\n{f.read()}")
    count = {"tfs_grpc": 0, "tfs_rest": 0}
    try:
      rows = cls.stats()
    except OSError:
      return count  # Not listening yet.
    for row in rows:
      if row["pxname"] in count and row["status"].startswith("UP"):
        count[row["pxname"]] += 1
    return count

  @classmethod
  def answered(cls) -> dict[tuple[str, str], int]:
    """2xx responses by (backend, replica) so far."""
    return {
        (row["pxname"], row["svname"]): int(row["hrsp_2xx"] or 0)
        for row in cls.stats()
        if row["pxname"] in ("tfs_grpc", "tfs_rest")
    }

  def loads(self) -> tuple[load.GrpcLoad, load.RestLoad]:
    return (
        load.GrpcLoad(
            f"127.0.0.1:{self.grpc_port}",
            test_models.predict_request([X]),
            4,
            check=_check_grpc,
        ),
        load.RestLoad(
            self.rest_port,
            f"/v1/models/{MODEL}:predict",
            {"instances": [X]},
            2,
            check=_check_rest,
        ),
    )

  def test_1_one_grpc_channel_reaches_every_replica(self):
    before = self.answered()
    request = test_models.predict_request([X])
    with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for _ in range(30):
        self.assertIsNone(_check_grpc(stub.Predict(request, timeout=30)))
    after = self.answered()
    per_replica = {
        name: after[("tfs_grpc", name)] - before[("tfs_grpc", name)]
        for name in ("replica1", "replica2", "replica3")
    }
    print(f"30 calls of one gRPC channel, by replica: {per_replica}")
    # Round robin per request: 10 each.
    self.assertEqual(sorted(per_replica.values()), [10, 10, 10])

  def test_2_a_new_version_reaches_every_replica_without_a_failure(self):
    grpc_load, rest_load = self.loads()
    with grpc_load, rest_load:
      time.sleep(1.0)
      published = time.monotonic()
      self.publisher.publish(2)
      for replica in self.replicas:
        status = lifecycle_util.StatusClient(replica.grpc_address)
        try:
          lifecycle_util.wait_for(
              lambda s=status: s.state(2)
              == lifecycle_util.ModelVersionStatus.AVAILABLE
              and s.state(1) == lifecycle_util.ModelVersionStatus.END,
              60,
              f"version 2 alone on {replica.grpc_address}",
          )
        finally:
          status.close()
      everywhere = time.monotonic() - published
      answered_by_1 = grpc_load.versions.get(1, 0)
      time.sleep(1.0)
      self.assertEqual(grpc_load.versions.get(1, 0), answered_by_1)
    print(
        f"version 2 on all {REPLICAS} replicas {everywhere:.1f} s after "
        f"publishing; gRPC {grpc_load.ok} ok by version {grpc_load.versions}, "
        f"{len(grpc_load.failures)} failed; REST {rest_load.ok} ok, "
        f"{len(rest_load.failures)} failed"
    )
    self.assertEmpty(grpc_load.failures)
    self.assertEmpty(rest_load.failures)
    self.assertGreater(grpc_load.versions.get(2, 0), 0)

  def test_3_a_killed_replica_is_routed_around_and_comes_back(self):
    victim = self.replicas[1]
    grpc_load, rest_load = self.loads()
    with grpc_load, rest_load:
      time.sleep(1.0)
      os.kill(victim.proc.pid, signal.SIGKILL)
      killed = time.monotonic()
      victim.proc.wait()
      lifecycle_util.wait_for(
          lambda: self.up() == {"tfs_grpc": 2, "tfs_rest": 2},
          30,
          "the killed replica DOWN in HAProxy",
          interval_s=0.05,
      )
      down_after = time.monotonic() - killed
      time.sleep(1.0)
      ok_while_down = grpc_load.ok, rest_load.ok
      # Back on the same ports, as a restarted pod or service would be.
      revived = _start_replica(
          self.base_path,
          victim.grpc_port,
          victim.rest_port,
          self.log_dir,
          self.replica_env,
      )
      self.replicas[1] = revived
      revived.wait_until_serving()
      restarted = time.monotonic()
      lifecycle_util.wait_for(
          lambda: self.up() == {"tfs_grpc": 3, "tfs_rest": 3},
          30,
          "the replica UP again in HAProxy",
          interval_s=0.05,
      )
      up_after = time.monotonic() - restarted
      before = self.answered()
      time.sleep(1.5)
      after = self.answered()
    retried = {
        row["pxname"]: (int(row["wretr"] or 0), int(row["wredis"] or 0))
        for row in self.stats()
        if row["svname"] == "replica2"
    }
    print(
        f"SIGKILL of replica2: DOWN in HAProxy after {down_after:.2f} s, "
        f"UP {up_after:.2f} s after it served again; gRPC {grpc_load.ok} ok, "
        f"{len(grpc_load.failures)} failed; REST {rest_load.ok} ok, "
        f"{len(rest_load.failures)} failed "
        f"{[(round(t - killed, 3), m) for _, t, m in rest_load.failures]}; "
        f"(retries, redispatches) to replica2 so far: {retried}"
    )
    # Retries took every call the killed replica had in flight.
    self.assertEmpty(grpc_load.failures)
    # Over HTTP/1.1, HAProxy (2.6 as Debian ships it) sometimes answers a
    # request it had in flight there by closing the client's keep-alive
    # connection without a response, HTTP/1.1's way of asking a client to
    # send it again, instead of retrying it itself. At most the one request
    # of each client connection, and only as the replica dies.
    for _, ended, message in rest_load.failures:
      self.assertStartsWith(message, "RemoteDisconnected")
      self.assertBetween(ended - killed, 0.0, 1.0)
    self.assertLessEqual(len(rest_load.failures), 2)
    self.assertGreater(grpc_load.ok, ok_while_down[0])
    self.assertGreater(rest_load.ok, ok_while_down[1])
    for backend in ("tfs_grpc", "tfs_rest"):
      self.assertGreater(
          after[(backend, "replica2")], before[(backend, "replica2")], backend
      )


class S3FleetTest(FleetTest):
  """The same fleet, its versions in a bucket instead of a shared path."""

  @classmethod
  def set_up_model_store(cls) -> dict[str, str]:
    cls.store = s3_server.S3Server(cls.log_dir).start()
    cls.store.client().create_bucket(Bucket="fleet")
    cls.base_path = f"s3://fleet/{MODEL}"
    cls.publisher = s3_server.Publisher(
        cls.store, "fleet", MODEL, test_models.export_versioned
    )
    return cls.store.env()

  @classmethod
  def tearDownClass(cls):
    super().tearDownClass()
    cls.store.stop()


if __name__ == "__main__":
  absltest.main()
