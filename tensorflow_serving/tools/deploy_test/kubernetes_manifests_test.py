"""The Kubernetes manifests, checked against the real server.

Statically, the objects fit together: selectors, the autoscaler's target and
the CPU request it scales on, the Service's target ports, the image's tag and
user. Against the server: the pod's command line (the image's entrypoint run
with the Deployment's env and args, recorded) parses with the server's own
absl flags, and so does every flag a comment suggests; the object-storage
scheme a comment suggests is one TensorFlow's file systems serve; and each
probe runs as the kubelet runs it against a server started by that
entrypoint: all succeed while the model is served, and readiness (not
liveness) fails once the model's version is removed.

Not proven: that an API server accepts the objects (none runs here; fields
are checked only where this test reads them).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import time
import tomllib
from typing import Any

from absl.testing import absltest
import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import tensorflow as tf
import yaml

from tensorflow_serving.model_servers import main as server_main
from tensorflow_serving.model_servers import version
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server
from tensorflow_serving.test_util import s3_server
from tensorflow_serving.tools.deploy_test import recipes

UNREADY_TIMEOUT_S = 30.0


def _objects(subdir: str = "") -> dict[str, dict[str, Any]]:
  """Every manifest's objects by kind (one of each)."""
  objects: dict[str, dict[str, Any]] = {}
  directory = os.path.join(recipes.path(recipes.KUBERNETES_DIR), subdir)
  for name in sorted(os.listdir(directory)):
    if name.endswith(".yaml"):
      with open(os.path.join(directory, name), encoding="utf-8") as f:
        for document in yaml.safe_load_all(f):
          assert document["kind"] not in objects, document["kind"]
          objects[document["kind"]] = document
  return objects


def _comments() -> str:
  """The manifests' comments: where the variants live."""
  directory = recipes.path(recipes.KUBERNETES_DIR)
  parts = []
  for name in sorted(os.listdir(directory)):
    if name.endswith(".yaml"):
      with open(os.path.join(directory, name), encoding="utf-8") as f:
        parts += [line.split("#", 1)[1] for line in f if "#" in line]
  return "\n".join(parts)


def _pod_spec(subdir: str = "") -> dict[str, Any]:
  return _objects(subdir)["Deployment"]["spec"]["template"]["spec"]


def _container(subdir: str = "") -> dict[str, Any]:
  (container,) = _pod_spec(subdir)["containers"]
  return container


def _container_ports() -> dict[str, int]:
  return {p["name"]: p["containerPort"] for p in _container()["ports"]}


def _env() -> dict[str, str]:
  return {e["name"]: e["value"] for e in _container()["env"]}


def _pod_argv() -> list[str]:
  """The command line the pod runs: the image's entrypoint script with the
  Deployment's env and args (the image sets no other variables it reads)."""
  return recipes.record_entrypoint(
      _env(), _container()["args"], binaries.test_tmpdir()
  ).argv


def _parse_server_flags(argv: list[str]) -> list[str]:
  """The server's absl flags over `argv`; returns the arguments it does not
  know (the server would only warn about those and go on)."""
  return server_main.FLAGS(["tensorflow_model_server", *argv], known_only=True)[
      1:
  ]


def _probe_port(port: int | str) -> int:
  """A probe's port as the kubelet resolves it: a number, or a name of one
  of the container's ports."""
  if isinstance(port, int):
    return port
  return _container_ports()[port]


def _run_probe(probe: dict[str, Any], local_ports: dict[int, int]) -> bool:
  """One probe, as the kubelet runs it, against local ports standing in for
  the container's."""
  timeout = probe.get("timeoutSeconds", 1)
  if "httpGet" in probe:
    get = probe["httpGet"]
    connection = http.client.HTTPConnection(
        "127.0.0.1", local_ports[_probe_port(get["port"])], timeout=timeout
    )
    try:
      connection.request(
          "GET",
          get["path"],
          headers={"User-Agent": "kube-probe/1.31", "Accept": "*/*"},
      )
      status = connection.getresponse().status
    except OSError:
      return False
    finally:
      connection.close()
    return 200 <= status < 400
  check = probe["grpc"]
  with grpc.insecure_channel(f"127.0.0.1:{local_ports[check['port']]}") as ch:
    try:
      response = health_pb2_grpc.HealthStub(ch).Check(
          health_pb2.HealthCheckRequest(service=check.get("service", "")),
          timeout=timeout,
      )
    except grpc.RpcError:
      return False
  return response.status == health_pb2.HealthCheckResponse.SERVING


class ManifestsFitTogetherTest(absltest.TestCase):

  def test_kinds(self):
    versions = {kind: o["apiVersion"] for kind, o in _objects().items()}
    self.assertEqual(
        versions,
        {
            "Deployment": "apps/v1",
            "Service": "v1",
            "HorizontalPodAutoscaler": "autoscaling/v2",
            "PodDisruptionBudget": "policy/v1",
        },
    )

  def test_selectors_match_the_pods(self):
    objects = _objects()
    deployment = objects["Deployment"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    self.assertTrue(selector)
    self.assertLessEqual(selector.items(), labels.items())
    self.assertEqual(objects["Service"]["spec"]["selector"], selector)
    pdb = objects["PodDisruptionBudget"]["spec"]
    self.assertEqual(pdb["selector"]["matchLabels"], selector)

  def test_autoscaler_targets_the_deployment_on_its_cpu_request(self):
    objects = _objects()
    deployment, hpa = objects["Deployment"], objects["HorizontalPodAutoscaler"]
    self.assertEqual(
        hpa["spec"]["scaleTargetRef"],
        {
            "apiVersion": deployment["apiVersion"],
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        },
    )
    # The autoscaler owns the replica count; a re-apply must not reset it.
    self.assertNotIn("replicas", deployment["spec"])
    (metric,) = hpa["spec"]["metrics"]
    self.assertEqual(metric["resource"]["name"], "cpu")
    self.assertEqual(metric["resource"]["target"]["type"], "Utilization")
    self.assertIn("cpu", _container()["resources"]["requests"])
    self.assertLessEqual(hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
    # Drains can proceed: the budget leaves at least one pod evictable.
    pdb = objects["PodDisruptionBudget"]["spec"]
    self.assertLess(pdb["minAvailable"], hpa["spec"]["minReplicas"])

  def test_service_ports_reach_the_container_ports(self):
    container_ports = _container_ports()
    self.assertEqual(container_ports, {"grpc": 8500, "http": 8501})
    for port in _objects()["Service"]["spec"]["ports"]:
      self.assertEqual(port["port"], container_ports[port["targetPort"]])

  def test_image_is_the_recipes_image(self):
    container = _container()
    # No command: the image's entrypoint builds the flags, args append.
    self.assertNotIn("command", container)
    project = tomllib.loads(recipes.read("pyproject.toml"))["project"]
    self.assertEqual(
        container["image"], f"{project['name']}:{version.SERVER_VERSION}"
    )
    # The non-root user the pod asks for is the one the image creates.
    dockerfile = recipes.read(recipes.DOCKERFILE)
    (uid,) = re.findall(r"useradd .*--uid (\d+)", dockerfile)
    security = _pod_spec()["securityContext"]
    self.assertEqual(security["runAsUser"], int(uid))
    self.assertTrue(security["runAsNonRoot"])

  def test_models_come_from_the_mounted_volume(self):
    container = _container()
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    self.assertEqual(mounts.keys(), volumes.keys())
    self.assertIn("persistentVolumeClaim", volumes["models"])
    self.assertTrue(mounts["models"]["readOnly"])
    _parse_server_flags(_pod_argv())
    self.assertTrue(
        server_main.FLAGS.model_base_path.startswith(
            mounts["models"]["mountPath"] + "/"
        )
    )


class ManifestsMatchTheServerTest(absltest.TestCase):

  def test_pod_command_line_parses_with_the_servers_flags(self):
    argv = _pod_argv()
    self.assertEqual(_parse_server_flags(argv), [])
    flags = server_main.FLAGS
    self.assertEqual(flags.port, _container_ports()["grpc"])
    self.assertEqual(flags.rest_api_port, _container_ports()["http"])
    self.assertEqual(flags.model_name, _env()["MODEL_NAME"])
    # The gRPC liveness probe needs the server's grpc.health.v1 service.
    self.assertTrue(flags.enable_grpc_healthcheck_service)

  def test_flags_and_schemes_in_comments_exist(self):
    comments = _comments()
    suggested = re.findall(r"(--[a-z][a-z0-9_]*=\S+)", comments)
    self.assertIn("--file_system_poll_wait_seconds=30", suggested)
    self.assertEqual(_parse_server_flags(suggested), [])
    schemes = set(re.findall(r"\b([a-z][a-z0-9]*)://", comments))
    self.assertEqual(schemes, {"gs"})
    # gs:// is one of TensorFlow's own; s3:// has its own variant (below).
    self.assertContainsSubset(schemes, tf.io.gfile.get_registered_schemes())

  def test_probes_name_container_ports(self):
    container = _container()
    ports = set(_container_ports().values())
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    for kind in kinds:
      probe = container[kind]
      if "httpGet" in probe:
        self.assertIn(_probe_port(probe["httpGet"]["port"]), ports, kind)
      else:
        # gRPC probes take a port number only, never a name.
        self.assertIsInstance(probe["grpc"]["port"], int, kind)
        self.assertIn(probe["grpc"]["port"], ports, kind)
    self.assertEqual(
        container["readinessProbe"]["httpGet"]["path"], "/v1/health/ready"
    )

  def test_probes_against_a_server_started_by_the_entrypoint(self):
    container = _container()
    env = _env()
    work = binaries.test_tmpdir()
    models = os.path.join(work, "models")
    model_dir = os.path.join(models, env["MODEL_NAME"])
    half_plus_two.export_versions(model_dir, [1])
    # The volume's mount point, here a temporary directory; the ports are
    # moved by appended flags, as a Pod's args would append them.
    env["MODEL_BASE_PATH"] = models
    grpc_port = binaries.pick_unused_port()
    rest_port = binaries.pick_unused_port()
    local = {
        _container_ports()["grpc"]: grpc_port,
        _container_ports()["http"]: rest_port,
    }
    server = recipes.start_entrypoint(
        env,
        [
            *container["args"],
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
        ],
        work,
        grpc_port,
        rest_port,
    )
    try:
      server.wait_until_serving()
      for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        self.assertTrue(_run_probe(container[kind], local), kind)
      # Without an AVAILABLE version the pod leaves the Service (readiness
      # fails) but is not restarted (liveness holds).
      shutil.rmtree(os.path.join(model_dir, "1"))
      deadline = time.monotonic() + UNREADY_TIMEOUT_S
      while _run_probe(container["readinessProbe"], local):
        self.assertLess(time.monotonic(), deadline, "still ready")
        time.sleep(0.2)
      self.assertTrue(_run_probe(container["livenessProbe"], local))
      self.assertTrue(_run_probe(container["startupProbe"], local))
    finally:
      returncode = server.stop()
    log = server.log()
    self.assertNotIn("unknown argument", log)
    self.assertEqual(returncode, 0, log)


def _kserve_runtime() -> dict[str, Any]:
  path = os.path.join(
      recipes.path(recipes.KUBERNETES_DIR),
      "kserve",
      "cluster_serving_runtime.yaml",
  )
  with open(path, encoding="utf-8") as f:
    (document,) = yaml.safe_load_all(f)
  return document


def _kserve_args(name: str) -> list[str]:
  """The runtime's args as KServe renders them for an InferenceService."""
  (container,) = _kserve_runtime()["spec"]["containers"]
  return [arg.replace("{{.Name}}", name) for arg in container["args"]]


class KServeRuntimeTest(absltest.TestCase):
  """The ClusterServingRuntime: TensorFlow models, v1 and v2, right ports."""

  def test_serves_tensorflow_with_both_protocols(self):
    runtime = _kserve_runtime()
    self.assertEqual(runtime["apiVersion"], "serving.kserve.io/v1alpha1")
    self.assertEqual(runtime["kind"], "ClusterServingRuntime")
    spec = runtime["spec"]
    self.assertEqual(
        [f["name"] for f in spec["supportedModelFormats"]], ["tensorflow"]
    )
    self.assertEqual(
        spec["protocolVersions"], ["v1", "v2", "grpc-v1", "grpc-v2"]
    )

  def test_args_parse_and_ports_are_kserves(self):
    (container,) = _kserve_runtime()["spec"]["containers"]
    self.assertEqual(container["name"], "kserve-container")
    self.assertEqual(container["command"], ["tensorflow_model_server"])
    self.assertEqual(_parse_server_flags(_kserve_args("mnist")), [])
    flags = server_main.FLAGS
    self.assertEqual(flags.model_name, "mnist")
    # KServe's storage initializer mounts the model here.
    self.assertEqual(flags.model_base_path, "/mnt/models")
    # HTTP on KServe's 8080, gRPC on its 9000 (h2c).
    (port,) = container["ports"]
    self.assertEqual(port["containerPort"], flags.rest_api_port)
    self.assertEqual(flags.rest_api_port, 8080)
    self.assertEqual(flags.port, 9000)
    annotations = _kserve_runtime()["spec"]["annotations"]
    self.assertEqual(
        int(annotations["prometheus.kserve.io/port"]), flags.rest_api_port
    )
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
      self.assertEqual(container[kind]["httpGet"]["port"], 8080, kind)

  def test_probes_and_both_protocols_against_the_server(self):
    (container,) = _kserve_runtime()["spec"]["containers"]
    work = binaries.test_tmpdir()
    model_dir = os.path.join(work, "kserve_model")
    half_plus_two.export_versions(model_dir, [1])
    grpc_port = binaries.pick_unused_port()
    rest_port = binaries.pick_unused_port()
    # Appended flags move the model and ports, as in a test pod.
    args = _kserve_args("half") + [
        f"--model_base_path={model_dir}",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
    ]
    log_path = os.path.join(work, f"kserve_{grpc_port}.log")
    with open(log_path, "wb") as log:
      proc = subprocess.Popen(
          model_server.server_command(args),
          stdout=log,
          stderr=subprocess.STDOUT,
          env=binaries.subprocess_env(),
      )
    server = model_server.ModelServer(proc, grpc_port, rest_port, log_path)
    try:
      server.wait_until_serving()
      local = {8080: rest_port, 9000: grpc_port}
      for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        self.assertTrue(_run_probe(container[kind], local), kind)
      for path in ("/v1/models/half", "/v2/models/half"):
        connection = http.client.HTTPConnection(
            "127.0.0.1", rest_port, timeout=10
        )
        try:
          connection.request("GET", path)
          self.assertEqual(connection.getresponse().status, 200, path)
        finally:
          connection.close()
    finally:
      returncode = server.stop()
    self.assertEqual(returncode, 0, server.log())


class S3VariantTest(absltest.TestCase):
  """s3/: the same pod with models from an S3-compatible store."""

  SUBDIR = "s3"

  def secret(self) -> dict[str, Any]:
    return _objects(self.SUBDIR)["Secret"]

  def pod_env(self, secret_values: bool) -> dict[str, str]:
    """The container's env; secretKeyRef values resolved from the Secret."""
    env = {}
    data = self.secret()["stringData"]
    for entry in _container(self.SUBDIR)["env"]:
      if "value" in entry:
        env[entry["name"]] = entry["value"]
      elif secret_values:
        env[entry["name"]] = data[entry["valueFrom"]["secretKeyRef"]["key"]]
    return env

  def test_same_pod_as_the_volume_deployment_but_for_storage(self):
    main, s3 = _container(), _container(self.SUBDIR)
    for field in (
        "image",
        "ports",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "lifecycle",
        "resources",
        "securityContext",
    ):
      self.assertEqual(s3[field], main[field], field)
    self.assertEqual(
        _pod_spec(self.SUBDIR)["securityContext"],
        _pod_spec()["securityContext"],
    )
    self.assertEqual(
        _objects(self.SUBDIR)["Deployment"]["metadata"],
        _objects()["Deployment"]["metadata"],
    )

  def test_credentials_come_from_the_secret(self):
    secret = self.secret()
    refs = {}
    for entry in _container(self.SUBDIR)["env"]:
      if entry["name"].startswith("AWS_") and "KEY" in entry["name"]:
        self.assertNotIn("value", entry, entry["name"])
        ref = entry["valueFrom"]["secretKeyRef"]
        self.assertEqual(ref["name"], secret["metadata"]["name"])
        refs[entry["name"]] = ref["key"]
    self.assertEqual(
        sorted(refs), ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    )
    self.assertContainsSubset(refs.values(), secret["stringData"])

  def test_command_line_parses_and_caches_on_the_scratch_volume(self):
    argv = recipes.record_entrypoint(
        self.pod_env(secret_values=True),
        _container(self.SUBDIR)["args"],
        binaries.test_tmpdir(),
    ).argv
    self.assertEqual(_parse_server_flags(argv), [])
    flags = server_main.FLAGS
    self.assertTrue(flags.model_base_path.startswith("s3://"))
    self.assertTrue(flags.enable_grpc_healthcheck_service)
    mounts = {
        m["name"]: m["mountPath"]
        for m in _container(self.SUBDIR)["volumeMounts"]
    }
    volumes = {v["name"]: v for v in _pod_spec(self.SUBDIR)["volumes"]}
    self.assertEqual(mounts["model-cache"], flags.model_cache_dir)
    limit = volumes["model-cache"]["emptyDir"]["sizeLimit"]
    self.assertTrue(limit.endswith("Gi"), limit)
    # The cache stays under the volume's limit (the kubelet would evict).
    self.assertGreater(flags.model_cache_size_bytes, 0)
    self.assertLess(flags.model_cache_size_bytes, int(limit[:-2]) << 30)

  def test_probes_against_a_server_reading_an_s3_server(self):
    container = _container(self.SUBDIR)
    env = self.pod_env(secret_values=True)
    work = binaries.test_tmpdir()
    export = os.path.join(work, "export")
    half_plus_two.export_versions(export, [1])
    with s3_server.S3Server(work) as store:
      bucket = env["MODEL_BASE_PATH"].removeprefix("s3://").split("/")[0]
      store.client().create_bucket(Bucket=bucket)
      store.upload_tree(
          os.path.join(export, "1"), bucket, f"{env['MODEL_NAME']}/1"
      )
      # The cluster's store address stands for this loopback server; the
      # Secret's placeholder keys are what the pod would read.
      env["S3_ENDPOINT"] = f"127.0.0.1:{store.port}"
      grpc_port = binaries.pick_unused_port()
      rest_port = binaries.pick_unused_port()
      local = {
          _container_ports()["grpc"]: grpc_port,
          _container_ports()["http"]: rest_port,
      }
      args = [
          a for a in container["args"] if not a.startswith("--model_cache_dir")
      ]
      server = recipes.start_entrypoint(
          env,
          [
              *args,
              f"--model_cache_dir={os.path.join(work, 'cache')}",
              "--file_system_poll_wait_seconds=1",
              f"--port={grpc_port}",
              f"--rest_api_port={rest_port}",
          ],
          work,
          grpc_port,
          rest_port,
      )
      try:
        server.wait_until_serving()
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
          self.assertTrue(_run_probe(container[kind], local), kind)
      finally:
        returncode = server.stop()
    log = server.log()
    self.assertIn(f"Downloaded s3://{bucket}/{env['MODEL_NAME']}/1", log)
    self.assertEqual(returncode, 0, log)


if __name__ == "__main__":
  absltest.main()
