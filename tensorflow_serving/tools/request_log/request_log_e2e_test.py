"""End to end: log traffic, summarize it, warm a new version from it, replay.

The real binary serves half_plus_two under --num_workers=2 with a
logging_config; gRPC and REST traffic is logged by both workers into
per-worker files; the tool (run as its binary) summarizes the logs, turns
them into version 2's warmup file, which the server replays while loading
version 2, and replays the logs over gRPC and REST against the new version.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

from absl.testing import absltest
import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two

TIMEOUT_S = 120.0
GRPC_REQUESTS = 6
REST_REQUESTS = 4


def documented_config(base: str, prefix: str) -> str:
  """docs/logging_and_tracing.md's textproto config, with test paths."""
  root = binaries.runfiles_root()
  path = os.path.join(
      os.path.join(root, binaries.WORKSPACE_NAME)
      if root
      else binaries.repo_root(),
      "docs",
      "logging_and_tracing.md",
  )
  with open(path, encoding="utf-8") as f:
    doc = f.read()
  (block,) = re.findall(r"```textproto\n(.*?)```", doc, re.DOTALL)
  return block.replace('"/models/half"', f'"{base}"').replace(
      '"/var/log/tfs/half"', f'"{prefix}"'
  )


def tool(*args: str) -> str:
  argv = binaries.binary_command(
      "tensorflow_serving/tools/request_log",
      "request_log_tool",
      "tensorflow_serving.tools.request_log.request_log_tool",
  ) + list(args)
  done = subprocess.run(
      argv,
      capture_output=True,
      text=True,
      env=binaries.subprocess_env(),
      timeout=TIMEOUT_S,
      check=False,
  )
  if done.returncode:
    raise AssertionError(f"{argv} failed:\n{done.stdout}\n{done.stderr}")
  return done.stdout


def wait_for(predicate, what: str):
  deadline = time.monotonic() + TIMEOUT_S
  while time.monotonic() < deadline:
    value = predicate()
    if value:
      return value
    time.sleep(0.2)
  raise AssertionError(f"timed out waiting for {what}")


class RequestLogEndToEndTest(absltest.TestCase):

  def test_log_summarize_warm_and_replay(self):
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    base = os.path.join(tmp, "models", "half")
    half_plus_two.export_half_plus_two_tf1(os.path.join(base, "1"))
    logs = os.path.join(tmp, "logs")
    prefix = os.path.join(logs, "half")
    config = os.path.join(tmp, "models.config")
    with open(config, "w", encoding="utf-8") as f:
      f.write(documented_config(base, prefix))
    monitoring = os.path.join(tmp, "monitoring.config")
    with open(monitoring, "w", encoding="utf-8") as f:
      f.write("prometheus_config { enable: true }\n")

    with model_server.running_server(
        [
            f"--model_config_file={config}",
            f"--monitoring_config_file={monitoring}",
            "--file_system_poll_wait_seconds=1",
            "--num_workers=2",
        ],
        timeout_s=TIMEOUT_S,
    ) as server:
      # Log: gRPC and REST traffic.
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(GRPC_REQUESTS):
          request = predict_pb2.PredictRequest()
          request.model_spec.name = "half"
          request.inputs["x"].CopyFrom(
              tensor_codec.ndarray_to_tensor_proto(
                  np.asarray([float(i)], np.float32)
              )
          )
          stub.Predict(request, timeout=30)
      for i in range(REST_REQUESTS):
        urllib.request.urlopen(
            urllib.request.Request(
                f"{server.rest_url}/v1/models/half:predict",
                data=json.dumps({"instances": [float(i)]}).encode(),
            ),
            timeout=30,
        ).read()

      # Each worker writes its own stream, named after it.
      logged = GRPC_REQUESTS + REST_REQUESTS

      def summary():
        if not os.path.isdir(logs):
          return None
        result = json.loads(tool("summary", f"--logs={logs}", "--json"))
        return result if result["requests"] == logged else None

      result = wait_for(summary, f"{logged} logged requests")
      names = os.listdir(logs)
      self.assertNotEmpty(names)
      for name in names:
        self.assertRegex(name, r"^half-worker[01]-\d{8}T\d{6}Z-\d+\.tfrecord$")
      (group,) = result["groups"]
      self.assertEqual(
          (group["model"], group["version"], group["signature"]),
          ("half", 1, "serving_default"),
      )
      self.assertEqual(group["log_type"], "predict_log")
      self.assertEqual(group["inputs"], {"x:float[1]": logged})
      self.assertEqual(result["errors"], {})
      self.assertEqual(result["without_response"], 0)
      text = tool("summary", f"--logs={prefix}-*")
      self.assertIn(f"half v1 serving_default predict_log: {logged}", text)
      self.assertIn("errors: 0", text)

      # The logging metric, one scrape summing both workers.
      scrape = (
          urllib.request.urlopen(
              f"{server.rest_url}/monitoring/prometheus/metrics", timeout=30
          )
          .read()
          .decode()
      )
      self.assertIn(
          ':tensorflow:serving:request_log_count{model_name="half",'
          f'status_code="OK"}} {logged}',
          scrape,
      )

      # The per-version series and the build info, summed across workers.
      for entrypoint, count in (
          ("GRPC", GRPC_REQUESTS),
          ("REST", REST_REQUESTS),
      ):
        self.assertIn(
            ':tensorflow:serving:version_request_count{API="Predict",'
            f'entrypoint="{entrypoint}",model_name="half",'
            f'signature="serving_default",status="OK",version="1"}} {count}',
            scrape,
        )
      self.assertRegex(scrape, r":tensorflow:serving:build_info\{[^}]*\} 1")
      self.assertIn(
          ':tensorflow:serving:model_load_latency_count{model_name="half"} 2',
          scrape,
      )

      # Convert: version 2's warmup file, from a sample of the logs.
      staging = os.path.join(tmp, "staging", "2")
      half_plus_two.export_half_plus_two_tf1(staging)
      out = tool("warmup", f"--logs={logs}", "--count=5", f"--output={staging}")
      self.assertIn("wrote 5 warmup records", out)
      os.rename(staging, os.path.join(base, "2"))
      warmup_path = os.path.join(
          base, "2", "assets.extra", "tf_serving_warmup_requests"
      )
      wait_for(
          lambda: re.search(
              re.escape(
                  f"Finished reading warmup data for model at {warmup_path}. "
                  "Number of warmup records read: 5."
              ),
              server.log(),
          ),
          "version 2 to warm up from the converted file",
      )
      wait_for(
          lambda: any(
              s.version == 2 and s.state == s.AVAILABLE
              for s in server.model_status("half").model_version_status
          ),
          "version 2 to be available",
      )

      # Replay, over both APIs, against the latest version (2).
      replays = {}
      for protocol, address in (
          ("grpc", server.grpc_address),
          ("rest", f"localhost:{server.rest_port}"),
      ):
        replays[protocol] = json.loads(
            tool(
                "replay",
                f"--logs={logs}",
                f"--protocol={protocol}",
                f"--server={address}",
                "--rate=50",
                "--max_requests=20",
                "--duration=0",
                "--json",
            )
        )
      for protocol, summary_doc in replays.items():
        self.assertEqual(summary_doc["ok"], 20, (protocol, summary_doc))
        self.assertEqual(summary_doc["errors"], 0, protocol)
        self.assertIsNotNone(summary_doc["latency_ms"], protocol)
        # 20 calls at 50/s take about 0.4 s: the rate was kept.
        self.assertGreaterEqual(summary_doc["elapsed_s"], 0.35, protocol)

      # The replayed calls were served (and logged) by version 2.
      def replayed():
        result = json.loads(tool("summary", f"--logs={logs}", "--json"))
        by_version = {g["version"]: g["requests"] for g in result["groups"]}
        return by_version if by_version.get(2) == 40 else None

      self.assertEqual(
          wait_for(replayed, "replayed calls in the logs"),
          {1: logged, 2: 40},
      )


if __name__ == "__main__":
  absltest.main()
