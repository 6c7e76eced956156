"""gRPC load with h2load (`h2load -cC -mM`), nghttp2's C HTTP/2 client.

h2load knows no gRPC, but a unary call is a POST: every request carries one
image's PredictRequest (or v2 ModelInferRequest) in gRPC's 5-byte framing, with `content-type:
application/grpc` and `te: trailers`. A first run warms up; the measured run
(`-D`) writes a per-request log for the latency percentiles.

h2load checks only HTTP status, and a failed gRPC call is an HTTP 200 whose
trailers carry the error, with no message. So answers are checked three ways:
  - h2load's own counts: every request done, succeeded, 2xx, no timeouts;
  - the response bytes: a successful call returns exactly one message of the
    size the server's probed answer has, so the DATA bytes h2load received
    must be (requests done) x that size. A call that failed (trailers only)
    or answered with anything else shows up as missing bytes;
  - the official grpcio client, on the same settings (one channel, the same
    body, N in flight; its generic unary call, so the process needs no
    TensorFlow), just before and just after, checks every answer's scores
    against the in-process ones. Its calls are not measured.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

import grpc

from tensorflow_serving.tools.benchmark import closed_loop
from tensorflow_serving.tools.benchmark import grpcio_client
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload as workload_lib

_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(
    r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx"
)
_DATA = re.compile(r"traffic: .*?, .*? \((\d+)\) data")


def parse_output(text: str) -> dict[str, Any]:
  """h2load's summary lines as numbers; raises if one is missing."""
  found = {}
  for name, pattern in (
      ("finished", _FINISHED),
      ("requests", _REQUESTS),
      ("status", _STATUS),
      ("data", _DATA),
  ):
    match = pattern.search(text)
    if match is None:
      raise RuntimeError(f"h2load printed no {name} line:\n{text}")
    found[name] = match.groups()
  value, unit, rate = found["finished"]
  total, started, done, succeeded, failed, errored, timeout = map(
      int, found["requests"]
  )
  s2xx, s3xx, s4xx, s5xx = map(int, found["status"])
  return {
      # Wall time including connecting and stopping, and h2load's own rate
      # (requests done over the measured duration only).
      "wall_s": float(value) / (1e3 if unit == "ms" else 1.0),
      "rps": float(rate),
      "total": total,
      "started": started,
      "done": done,
      "succeeded": succeeded,
      "failed": failed,
      "errored": errored,
      "timeout": timeout,
      "status_2xx": s2xx,
      "status_other": s3xx + s4xx + s5xx,
      "data_bytes": int(found["data"][0]),
  }


def read_log(path: str) -> list[float]:
  """Latencies in seconds of the 2xx requests of an h2load --log-file."""
  latencies = []
  with open(path, encoding="ascii") as f:
    for line in f:
      fields = line.split("\t")
      if len(fields) == 3 and fields[1].startswith("2"):
        latencies.append(int(fields[2]) / 1e6)
  latencies.sort()
  return latencies


def check_counts(result: dict[str, Any], message_size: int) -> dict[str, int]:
  """Errors by kind from h2load's counts and the DATA bytes received.

  Responses cut short when the run stops are not counted as done, and their
  DATA (if any arrived) is at most one message per stream still open, so the
  bytes must lie between done and started messages, in whole messages.
  """
  errors = {}
  for kind in ("failed", "errored", "timeout"):
    if result[kind]:
      errors[f"h2load {kind}"] = result[kind]
  if result["status_other"]:
    errors["HTTP non-2xx"] = result["status_other"]
  data = result["data_bytes"]
  answered = data // message_size
  if answered < result["succeeded"]:
    errors["no_message"] = result["succeeded"] - answered
  if data % message_size or answered > result["started"]:
    errors["wrong_size"] = errors.get("wrong_size", 0) + 1
  return errors


def _probe_message_size(
    config: load_config.LoadConfig,
    body: bytes,
    work: workload_lib.Workload,
    errors: dict[str, int],
) -> int:
  """The framed size of the server's answer to `body` (its scores checked).

  A failed or wrong probe is counted in `errors`; up to three tries.
  """
  checker = workload_lib.Checker(config, work)
  with grpc.insecure_channel(config.server) as channel:
    call = channel.unary_unary(config.grpc_method)
    check = checker.grpc if config.api == "predict" else checker.v2_grpc
    for _ in range(3):
      try:
        raw = call(body, timeout=config.timeout_s)
      except grpc.RpcError as exc:
        kind = f"probe: {exc.code().name}"  # pytype: disable=attribute-error
        errors[kind] = errors.get(kind, 0) + 1
        continue
      error = check(0, raw)
      if error is not None:
        errors[f"probe: {error}"] = errors.get(f"probe: {error}", 0) + 1
      return 5 + len(raw)
  raise RuntimeError(f"no answer from {config.server} to size the check")


def _verify(
    config: load_config.LoadConfig, work: workload_lib.Workload
) -> tuple[int, dict[str, int]]:
  """Checks answers with grpcio on h2load's settings; (ok, errors)."""
  count = max(64, 4 * config.concurrency)
  window = closed_loop.Window(0, count, 0, sample_host=False)
  grpcio_client.run_futures(
      dataclasses.replace(
          config, client="grpcio", warmup_s=0, duration_s=0, max_requests=count
      ),
      work,
      window,
      config.concurrency,
      grpcio_client.generic_calls,
  )
  result = window.result()
  errors = dict(result.errors)
  if result.ok + sum(errors.values()) < count:
    errors["unanswered"] = count - result.ok - sum(errors.values())
  return result.ok, errors


def run(
    config: load_config.LoadConfig,
    on_measure: Callable[[], None] | None = None,
) -> dict[str, Any]:
  """Verifies, warms up, measures, verifies; returns the summary."""
  binary = shutil.which("h2load")
  if not binary:
    raise FileNotFoundError(
        "h2load is not installed (apt-get install nghttp2-client)"
    )
  images = workload_lib.load_images(config)[:1]
  body = workload_lib.grpc_request_body(config, images[0])
  work = workload_lib.Workload(
      images,
      [body],
      workload_lib.load_expected(config, 1) if config.check else None,
  )
  probe_errors: dict[str, int] = {}
  message_size = _probe_message_size(config, body, work, probe_errors)
  connections = config.grpc_channels
  streams = -(-config.concurrency // connections)
  verified_ok, verify_errors = _verify(config, work)
  with tempfile.TemporaryDirectory(prefix="load_test_h2load_") as tmp:
    body_path = os.path.join(tmp, "request.bin")
    with open(body_path, "wb") as f:
      f.write(workload_lib.grpc_frame(body))
    log_path = os.path.join(tmp, "requests.log")

    def h2load_run(seconds: float, log: bool) -> dict[str, Any]:
      argv = [
          binary,
          f"-c{connections}",
          f"-m{streams}",
          f"-D{max(100, round(seconds * 1000))}ms",
          "-d",
          body_path,
          "-H",
          "content-type: application/grpc",
          "-H",
          "te: trailers",
      ]
      if log:
        argv.append(f"--log-file={log_path}")
      argv.append(f"http://{config.server}{config.grpc_method}")
      out = subprocess.run(
          argv,
          check=False,
          capture_output=True,
          text=True,
          timeout=seconds + config.timeout_s + 30,
      )
      if out.returncode:
        raise RuntimeError(
            f"h2load exited with {out.returncode}:\n{out.stdout}{out.stderr}"
        )
      return parse_output(out.stdout)

    if config.warmup_s > 0:
      h2load_run(config.warmup_s, log=False)
    probe = probes.ResourceProbe(config.server_pid, own=probes.children_cpu_s)
    probe.start()
    if on_measure is not None:
      on_measure()
    result = h2load_run(config.duration_s, log=True)
    cpu, server_cpu, threads, host = probe.stop()
    latencies = read_log(log_path)
  after_ok, after_errors = _verify(config, work)
  errors = check_counts(result, message_size)
  errors.update(probe_errors)
  for kind, count in list(verify_errors.items()) + list(after_errors.items()):
    errors[f"grpcio check: {kind}"] = (
        errors.get(f"grpcio check: {kind}", 0) + count
    )
  ok = max(0, result["succeeded"] - errors.get("no_message", 0))
  # The measured duration, over which h2load computes its req/s.
  elapsed = result["done"] / result["rps"] if result["rps"] else 0.0
  out = stats.summarize(
      ok=ok,
      errors=errors,
      elapsed_s=elapsed or result["wall_s"],
      throughput_rps=ok / elapsed if elapsed else 0.0,
      latency=stats.latency_ms(latencies),
      loadgen_cpu_s=cpu,
      server_cpu_s=server_cpu,
      server_threads=threads,
      host=host,
  )
  out["verified_by_grpcio"] = verified_ok + after_ok
  out["response_message_bytes"] = message_size
  return out
