r"""1 worker against N on this host: throughput, latency, memory, kill -9.

Serves the MNIST tutorial model (exported once, or --model_base_path) with
the real binary and loads it with the tools users load servers with: wrk
for REST and h2load for gRPC (C clients, light enough to share a small host
with the server), many connections each. Every configuration is started
afresh: --num_workers=1 (a single process, no supervisor) and =2, batching
off and on. Then:

- a model whose run takes milliseconds of TensorFlow (the slow signature of
  the lifecycle tests' model): where more workers stop paying;
- a kill -9 of one worker under gRPC (official grpcio client, one connection
  per channel) and REST (wrk) load: what failed, and how soon the
  supervisor's replacement served;
- memory per process (RSS, and the private part that each added worker
  really costs) for a tiny model, MNIST, and a model with 128 MiB of
  variables.

  bazel run -c opt //tensorflow_serving/tools/benchmark:workers_benchmark \
      -- --duration=10 --out=/tmp/workers_benchmark.md
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from absl import app
from absl import flags
import numpy as np

from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import load
from tensorflow_serving.tools.benchmark import loadgen
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import wire

flags.DEFINE_float("duration", 10.0, "Seconds measured per row.")
flags.DEFINE_float("warmup", 2.0, "Seconds of load before each measurement.")
flags.DEFINE_integer("connections", 32, "Connections of wrk and h2load.")
flags.DEFINE_list("workers", ["1", "2"], "--num_workers values to compare.")
flags.DEFINE_list("protocols", ["rest", "grpc"], "APIs to load.")
flags.DEFINE_list("batching", ["off", "on"], "Batching settings to run.")
flags.DEFINE_float(
    "slow_model_ms",
    4.0,
    "TensorFlow time per request of the slow-model rows (0 skips them).",
)
flags.DEFINE_bool("kill", True, "Run the kill -9 test.")
flags.DEFINE_bool("memory", True, "Measure memory per worker.")
flags.DEFINE_string("model_base_path", "", "MNIST export to serve.")
flags.DEFINE_integer("training_iteration", 100, "Steps of the MNIST export.")
flags.DEFINE_string("mnist_dir", "/tmp", "Where MNIST .gz files may be.")
flags.DEFINE_string(
    "out", "/tmp/workers_benchmark.md", "Markdown report (absolute path)."
)
flags.DEFINE_string("work_dir", "", "Keep models and logs here.")
flags.DEFINE_list(
    "server_args",
    [],
    "Extra server flags for every row, e.g. --server_args=--grpc_max_threads=2",
)
FLAGS = flags.FLAGS

_MNIST = ("mnist", "predict_images", "images")
_BATCHING = (
    "max_batch_size { value: 32 }\n"
    "batch_timeout_micros { value: 0 }\n"
    "max_enqueued_batches { value: 64 }\n"
    "num_batch_threads { value: 1 }\n"
)


@dataclasses.dataclass
class Row:
  protocol: str
  batching: str
  workers: int
  rps: float = 0.0
  p50_ms: float | None = None
  p99_ms: float | None = None
  errors: int = 0
  server_cpu_pct: float | None = None
  loadgen_cpu_pct: float | None = None
  split: str = ""
  note: str = ""


class Server:
  """The binary on free ports, stopped on exit."""

  def __init__(self, work: str, name: str, args: list[str], workers: int):
    self.grpc_port = processes.pick_unused_port()
    self.rest_port = processes.pick_unused_port()
    monitoring = os.path.join(work, "monitoring.config")
    with open(monitoring, "w", encoding="utf-8") as f:
      f.write("prometheus_config { enable: true }\n")
    self.workers = workers
    self.child = processes.Child(
        name,
        processes.binary_command(
            "tensorflow_serving/model_servers",
            "tensorflow_model_server",
            "tensorflow_serving.model_servers.main",
        )
        + [
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            f"--num_workers={workers}",
            f"--monitoring_config_file={monitoring}",
            *args,
        ],
        os.path.join(work, f"{name}.log"),
    )

  def log(self) -> str:
    with open(self.child.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def wait_serving(self, probe_body: bytes, timeout_s: float = 300.0) -> None:
    address = f"127.0.0.1:{self.grpc_port}"
    processes.wait_until(
        self.child,
        lambda: processes.grpc_predict_probe(address, probe_body),
        timeout_s,
    )
    if self.workers > 1:
      deadline = time.monotonic() + timeout_s
      while f"All {self.workers} model server workers are serving" not in (
          self.log()
      ):
        if time.monotonic() > deadline or not self.child.alive():
          raise RuntimeError(f"workers not serving:\n{self.child.log_tail()}")
        time.sleep(0.2)

  def worker_pids(self) -> dict[int, int]:
    if self.workers == 1:
      return {0: self.child.pid}
    return {
        int(slot): int(pid)
        for slot, pid in re.findall(
            r"Started model server worker (\d+) \(pid (\d+)\)", self.log()
        )
    }

  def metrics_dir(self) -> str | None:
    found = re.search(r"their metrics are kept in (\S+)\)", self.log())
    return found.group(1) if found else None

  def stop(self) -> None:
    self.child.stop(60)


def _requests_by_process(server: Server) -> dict[str, float]:
  """request_count per worker process, from its multiprocess file."""
  from prometheus_client import mmap_dict  # pylint: disable=g-import-not-at-top

  directory = server.metrics_dir()
  counts: dict[str, float] = {}
  for path in glob.glob(os.path.join(directory or "/nonexistent", "counter_*")):
    owner = os.path.basename(path)[len("counter_") : -len(".db")]
    for key, value, _, _ in mmap_dict.MmapedDict.read_all_values_from_file(
        path
    ):
      if json.loads(key)[0] == ":tensorflow:serving:request_count":
        counts[owner] = counts.get(owner, 0.0) + value
  return counts


def _split(before: dict[str, float], after: dict[str, float]) -> str:
  served = {k: after[k] - before.get(k, 0.0) for k in after}
  total = sum(served.values())
  if len(served) < 2 or not total:
    return ""
  return " / ".join(
      f"{100 * v / total:.0f}%" for v in sorted(served.values(), reverse=True)
  )


def _grpc_frame(message: bytes) -> bytes:
  return b"\x00" + len(message).to_bytes(4, "big") + message


def run_h2load(
    port: int,
    body: bytes,
    connections: int,
    duration_s: float,
    warmup_s: float,
    server_pid: int,
) -> dict[str, Any]:
  """h2load on unary gRPC: one stream per connection, back to back."""
  h2load = shutil.which("h2load")
  if not h2load:
    raise FileNotFoundError(
        "h2load is not installed (apt-get install nghttp2-client)"
    )
  with tempfile.TemporaryDirectory(prefix="workers_h2load_") as tmp:
    body_path = os.path.join(tmp, "request.bin")
    with open(body_path, "wb") as f:
      f.write(_grpc_frame(body))
    log_path = os.path.join(tmp, "requests.log")
    argv = [
        h2load,
        f"-c{connections}",
        "-m1",
        "-t1",
        f"-D{max(1, round(duration_s))}",
        f"--warm-up-time={max(0, round(warmup_s))}",
        "-d",
        body_path,
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"--log-file={log_path}",
        f"http://127.0.0.1:{port}{loadgen.PREDICT_METHOD}",
    ]
    probe = loadgen.ResourceProbe(server_pid, own=loadgen.children_cpu_s)
    started = time.monotonic()
    probe.start()
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=duration_s + warmup_s + 60,
    )
    cpu, server_cpu, _, host = probe.stop()
    elapsed = time.monotonic() - started
    with open(log_path, encoding="ascii") as f:
      rows = [line.split("\t") for line in f if line.strip()]
  # Only the measured window is logged; a status other than 200 is an error.
  latencies = sorted(int(r[2]) / 1e3 for r in rows if r[1] == "200")
  errors = sum(1 for r in rows if r[1] != "200")
  finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out.stdout)
  failed = re.search(r"(\d+) failed, (\d+) errored, (\d+) timeout", out.stdout)
  if not finished or not latencies:
    raise RuntimeError(f"h2load failed:\n{out.stdout}\n{out.stderr}")
  if failed:
    errors = max(errors, sum(int(g) for g in failed.groups()))
  return {
      # h2load's own rate is over the measured window (its "finished in"
      # counts the warm-up too); the log holds that window's requests.
      "rps": float(finished.group(2)) * len(latencies) / len(rows),
      "p50": loadgen.percentile(latencies, 50),
      "p99": loadgen.percentile(latencies, 99),
      "errors": errors,
      "server_cpu_pct": 100 * server_cpu / elapsed if server_cpu else None,
      "loadgen_cpu_pct": 100 * cpu / elapsed,
      "host": host,
  }


def run_wrk(
    port: int, connections: int, duration_s: float, warmup_s: float, pid: int
) -> dict[str, Any]:
  summary = loadgen.run(
      loadgen.Config(
          server=f"127.0.0.1:{port}",
          protocol="rest",
          concurrency=connections,
          duration_s=duration_s,
          warmup_s=warmup_s,
          server_pid=pid,
          mnist_dir=FLAGS.mnist_dir,
          num_images=100,
          rest_client="wrk",
      )
  )
  latency = summary["latency_ms"] or {}
  return {
      "rps": summary["throughput_rps"],
      "p50": latency.get("p50"),
      "p99": latency.get("p99"),
      "errors": summary["errors"],
      "errors_by_kind": summary["errors_by_status"],
      "server_cpu_pct": summary["server_cpu_pct"],
      "loadgen_cpu_pct": summary["loadgen_cpu_pct"],
  }


def _mnist_request() -> bytes:
  """A Predict of one MNIST test image, as the benchmark sends."""
  image = loadgen.load_images(
      loadgen.Config(server="", mnist_dir=FLAGS.mnist_dir, num_images=1)
  )[0]
  name, signature, input_name = _MNIST
  return wire.encode_predict_request(
      name, signature, {input_name: image[np.newaxis]}
  )


def measure(
    work: str,
    model: str,
    protocol: str,
    batching: str,
    workers: int,
    body: bytes,
    extra: tuple[str, ...] = (),
    model_name: str = "mnist",
    note: str = "",
) -> Row:
  row = Row(protocol, batching, workers, note=note)
  args = [
      f"--model_name={model_name}",
      f"--model_base_path={model}",
      *extra,
      *FLAGS.server_args,
  ]
  if batching == "on":
    params = os.path.join(work, "batching.config")
    with open(params, "w", encoding="utf-8") as f:
      f.write(_BATCHING)
    args += ["--enable_batching", f"--batching_parameters_file={params}"]
  name = f"{protocol}_{batching}_{workers}w{'_' + note if note else ''}"
  server = Server(work, name.replace(" ", "_"), args, workers)
  try:
    server.wait_serving(body)
    before = _requests_by_process(server)
    if protocol == "rest":
      result = run_wrk(
          server.rest_port,
          FLAGS.connections,
          FLAGS.duration,
          FLAGS.warmup,
          server.child.pid,
      )
    else:
      result = run_h2load(
          server.grpc_port,
          body,
          FLAGS.connections if not note else 8,
          FLAGS.duration,
          FLAGS.warmup,
          server.child.pid,
      )
    row.split = _split(before, _requests_by_process(server))
  finally:
    server.stop()
  row.rps = result["rps"]
  row.p50_ms, row.p99_ms = result["p50"], result["p99"]
  row.errors = result["errors"]
  row.server_cpu_pct = result["server_cpu_pct"]
  row.loadgen_cpu_pct = result["loadgen_cpu_pct"]
  return row


# --- kill -9 -------------------------------------------------------------------


def kill_test(work: str, model: str, body: bytes) -> dict[str, Any]:
  """kill -9 of the busiest worker mid-run, under gRPC and REST load."""
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top

  server = Server(
      work,
      "kill",
      ["--model_name=mnist", f"--model_base_path={model}"],
      2,
  )
  result: dict[str, Any] = {}
  try:
    server.wait_serving(body)
    request = predict_pb2.PredictRequest.FromString(body)
    grpc_load = load.GrpcLoad(f"127.0.0.1:{server.grpc_port}", request, 8)
    wrk_result: dict[str, Any] = {}
    seconds = max(8.0, FLAGS.duration)
    wrk = threading.Thread(
        target=lambda: wrk_result.update(
            run_wrk(server.rest_port, 16, seconds, 0.0, server.child.pid)
        )
    )
    with grpc_load:
      wrk.start()
      time.sleep(seconds / 3)
      before = _requests_by_process(server)
      time.sleep(0.5)
      after = _requests_by_process(server)
      pids = server.worker_pids()
      busiest = max(
          (p for p in pids.values() if str(p) in after),
          key=lambda p: after[str(p)] - before.get(str(p), 0.0),
      )
      serving = server.log().count("is serving")
      os.kill(busiest, signal.SIGKILL)
      killed = time.monotonic()
      ok_at_kill = grpc_load.ok
      while server.log().count("is serving") <= serving:
        if time.monotonic() - killed > 120:
          raise RuntimeError("no replacement within 120 s")
        time.sleep(0.05)
      result["replaced_s"] = time.monotonic() - killed
      wrk.join()
    result["grpc_ok"] = grpc_load.ok
    result["grpc_ok_after_kill"] = grpc_load.ok - ok_at_kill
    result["grpc_failed"] = len(grpc_load.failures)
    result["grpc_failures"] = sorted(
        {m.split(" (")[0] for _, _, m in grpc_load.failures}
    )
    result["rest_rps"] = wrk_result.get("rps")
    result["rest_errors"] = wrk_result.get("errors")
    result["rest_errors_by_kind"] = wrk_result.get("errors_by_kind") or {}
    result["rest_seconds"] = seconds
  finally:
    server.stop()
  return result


# --- memory --------------------------------------------------------------------


def _memory_mb(pid: int) -> tuple[float, float]:
  """(RSS, private) in MiB; private is what another such process adds."""
  fields = {}
  with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
    for line in f:
      parts = line.split()
      if len(parts) >= 2 and parts[1].isdigit():
        fields[parts[0].rstrip(":")] = int(parts[1])
  private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
  return fields.get("Rss", 0) / 1024, private / 1024


def _export_big(path: str, mib: int) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  graph = tf.Graph()
  with graph.as_default():
    weights = tf.compat.v1.Variable(
        tf.random.uniform([mib * (1 << 18)]), name="weights"
    )
    x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
    y = tf.add(x, weights[0], name="y")
    sigs = tf.compat.v1.saved_model.signature_def_utils
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      builder = tf.compat.v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session,
          ["serve"],
          signature_def_map={
              "serving_default": sigs.predict_signature_def({"x": x}, {"y": y})
          },
      )
      builder.save()


def memory_test(work: str, mnist: str) -> list[dict[str, Any]]:
  tiny = os.path.join(work, "tiny")
  test_models.Publisher(tiny).publish(1)
  big = os.path.join(work, "big")
  os.makedirs(big, exist_ok=True)
  if not os.path.exists(os.path.join(big, "1")):
    _export_big(os.path.join(big, "1"), 128)
  tiny_body = test_models.predict_request([1.0]).SerializeToString()
  rows = []
  for label, model, name, body in (
      ("tiny (y = x + 1)", tiny, "m", tiny_body),
      ("MNIST softmax", mnist, "mnist", _mnist_request()),
      ("128 MiB of variables", big, "m", tiny_body),
  ):
    for workers in (1, 2):
      server = Server(
          work,
          f"memory_{name}_{workers}w",
          [f"--model_name={name}", f"--model_base_path={model}"],
          workers,
      )
      try:
        server.wait_serving(body)
        for _ in range(20):  # Touch the request path in every worker.
          processes.grpc_predict_probe(f"127.0.0.1:{server.grpc_port}", body)
        per_worker = [_memory_mb(p) for p in server.worker_pids().values()]
        supervisor = _memory_mb(server.child.pid) if workers > 1 else None
      finally:
        server.stop()
      rows.append(
          {
              "model": label,
              "workers": workers,
              "rss": [r for r, _ in per_worker],
              "private": [p for _, p in per_worker],
              "supervisor_rss": supervisor[0] if supervisor else None,
          }
      )
  return rows


# --- report --------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
  return "-" if value is None else format(value, spec)


def report(
    rows: list[Row],
    slow: list[Row],
    kill: dict[str, Any] | None,
    memory: list[dict[str, Any]] | None,
    context: str,
) -> str:
  lines = [
      "## --num_workers: 1 against 2 worker processes",
      "",
      context,
      "",
      "| API | batching | workers | req/s | p50 ms | p99 ms | errors | "
      "server CPU % | loadgen CPU % | requests per worker |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows + slow:
    lines.append(
        f"| {r.protocol}{' ' + r.note if r.note else ''} | {r.batching} | "
        f"{r.workers} | {r.rps:.0f} | {_fmt(r.p50_ms, '.2f')} | "
        f"{_fmt(r.p99_ms, '.2f')} | {r.errors} | {_fmt(r.server_cpu_pct, '.0f')} "
        f"| {_fmt(r.loadgen_cpu_pct, '.0f')} | {r.split or '-'} |"
    )
  lines += [
      "",
      "Ratios (req/s of the most workers over 1 worker, this run):",
      "",
  ]
  for group in rows + slow:
    if group.workers != 1:
      continue
    for other in rows + slow:
      if (
          other.workers > 1
          and (other.protocol, other.batching, other.note)
          == (group.protocol, group.batching, group.note)
          and group.rps
      ):
        ratio = other.rps / group.rps
        target = ""
        if group.batching == "off" and not group.note:
          target = " — " + ("PASS" if ratio >= 1.5 else "FAIL") + " (>= 1.5x)"
        lines.append(
            f"- {group.protocol}{' ' + group.note if group.note else ''}, "
            f"batching {group.batching}: {other.workers} workers "
            f"{other.rps:.0f} / 1 worker {group.rps:.0f} = {ratio:.2f}x"
            f"{target}"
        )
  if kill:
    lines += [
        "",
        "kill -9 of the busiest of 2 workers under load (8 grpcio channels, "
        f"wrk with 16 connections for {kill['rest_seconds']:.0f} s):",
        "",
        f"- replacement serving after {kill['replaced_s']:.1f} s;",
        f"- gRPC: {kill['grpc_failed']} calls failed "
        f"({', '.join(kill['grpc_failures']) or 'none'}), "
        f"{kill['grpc_ok']} succeeded ({kill['grpc_ok_after_kill']} after "
        "the kill);",
        f"- REST: {kill['rest_errors']} wrk errors "
        f"({', '.join(f'{k} {v}' for k, v in kill['rest_errors_by_kind'].items()) or 'none'}), "
        f"{_fmt(kill['rest_rps'], '.0f')} req/s over the run.",
    ]
  if memory:
    lines += [
        "",
        "Memory per worker process (MiB; private = not shared with the other "
        "worker, i.e. what one more worker costs):",
        "",
        "| model | workers | RSS per worker | private per worker | supervisor RSS |",
        "|---|---|---|---|---|",
    ]
    for m in memory:
      lines.append(
          f"| {m['model']} | {m['workers']} | "
          f"{' / '.join(f'{v:.0f}' for v in m['rss'])} | "
          f"{' / '.join(f'{v:.0f}' for v in m['private'])} | "
          f"{_fmt(m['supervisor_rss'], '.0f')} |"
      )
  return "\n".join(lines) + "\n"


def _log(message: str) -> None:
  print(
      f"[workers_benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True
  )


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  with contextlib.ExitStack() as stack:
    work = FLAGS.work_dir or stack.enter_context(
        tempfile.TemporaryDirectory(prefix="workers_benchmark_")
    )
    os.makedirs(work, exist_ok=True)
    log = _log
    model = FLAGS.model_base_path
    if not model:
      model = os.path.join(work, "mnist_model")
      if not os.path.exists(model):
        log(f"exporting MNIST to {model}")
        processes.run_to_completion(
            "mnist_saved_model",
            processes.binary_command(
                "tensorflow_serving/example",
                "mnist_saved_model",
                "tensorflow_serving.example.mnist_saved_model",
            )
            + [
                f"--training_iteration={FLAGS.training_iteration}",
                f"--work_dir={FLAGS.mnist_dir}",
                model,
            ],
            os.path.join(work, "export.log"),
            timeout_s=600,
        )
    body = _mnist_request()
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    rows = []
    for protocol in FLAGS.protocols:
      for batching in FLAGS.batching:
        for workers in [int(w) for w in FLAGS.workers]:
          log(f"{protocol}, batching {batching}, {workers} worker(s)")
          row = measure(work, model, protocol, batching, workers, body)
          log(
              f"  {row.rps:.0f} req/s, p99 {_fmt(row.p99_ms, '.2f')} ms, split {row.split}"
          )
          rows.append(row)
    slow = []
    if FLAGS.slow_model_ms > 0:
      slow_model = os.path.join(work, "slow")
      test_models.Publisher(slow_model).publish(1)
      slow_body = test_models.predict_request(
          [1.0],
          signature=test_models.SLOW_SIGNATURE,
          seconds=FLAGS.slow_model_ms / 1000,
      ).SerializeToString()
      for workers in [int(w) for w in FLAGS.workers]:
        log(f"slow model, {workers} worker(s)")
        slow.append(
            measure(
                work,
                slow_model,
                "grpc",
                "off",
                workers,
                slow_body,
                model_name="m",
                note=f"{FLAGS.slow_model_ms:g} ms model",
            )
        )
    kill = None
    if FLAGS.kill:
      log("kill -9 under load")
      kill = kill_test(work, model, body)
    memory = None
    if FLAGS.memory:
      log("memory")
      memory = memory_test(work, model)
    context = (
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before / {os.getloadavg()[0]:.2f} after; "
        f"{FLAGS.connections} connections (8 for the slow model), "
        f"{FLAGS.warmup:g} s warmup + {FLAGS.duration:g} s per row; one MNIST "
        "image per request; REST: wrk, gRPC: h2load (-m1); batching "
        "max_batch_size 32, batch_timeout_micros 0, num_batch_threads 1 per "
        "worker. Command: `bazel run -c opt "
        "//tensorflow_serving/tools/benchmark:workers_benchmark -- "
        + " ".join(sys.argv[1:])
        + "`"
    )
    text = report(rows, slow, kill, memory, context)
    print(text)
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      f.write(text)
    log(f"wrote {FLAGS.out}")
  return 0


if __name__ == "__main__":
  app.run(main)
