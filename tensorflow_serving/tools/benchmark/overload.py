r"""Goodput and p99 under overload, with deadline shedding off and on.

For each batching setting (off, on) and each shedding setting ("before":
--shed_by_deadline=false, runs queue until their deadline as upstream's do;
"after": the default, runs that cannot finish in time are refused at once
with UNAVAILABLE / 503 and a retry hint), starts tensorflow_model_server
with --rest_api_timeout_in_ms equal to the deadline, and for gRPC and REST:

1. measures the capacity C with a closed loop (--capacity_concurrency calls
   in flight, no deadline) on the "before" server of that batching setting;
2. offers --multiples of C open-loop (arrivals at a fixed rate whatever the
   answers, each call with --deadline_ms: grpc-timeout for gRPC, the
   server's REST timeout for REST) for --duration seconds each.

Goodput counts the answers within the deadline; its share of C is what the
issue's goals are stated in (at 2x C >= 90%, at 5x C >= 80%). The load
comes from open_loop_gen.js (Node.js), which reports when it fell behind
its own schedule: such a row is marked and is not a measurement of the
offered rate.

  bazel run -c opt //tensorflow_serving/tools/benchmark:overload -- \
      --duration=5 --out=/tmp/overload.md
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
import dataclasses
import os
import tempfile
import time

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import open_loop_node
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import workload

SHEDDING = {"before": "false", "after": "true"}

flags.DEFINE_list("protocols", ["grpc", "rest"], "APIs to load.")
flags.DEFINE_list("batching", ["off", "on"], "Batching settings to run.")
flags.DEFINE_list(
    "shedding", ["before", "after"], "before: --shed_by_deadline=false."
)
flags.DEFINE_list("multiples", ["1", "2", "5"], "Offered loads, times C.")
flags.DEFINE_float("duration", 5.0, "Seconds of arrivals per offered load.")
flags.DEFINE_float("capacity_duration", 5.0, "Seconds of the closed loop.")
flags.DEFINE_integer("capacity_concurrency", 64, "Closed loop's calls.")
flags.DEFINE_float("deadline_ms", 500.0, "Each call's deadline.")
flags.DEFINE_float("pause", 1.0, "Seconds between loads (queues drain).")
flags.DEFINE_integer(
    "grpc_connections",
    8,
    "HTTP/2 connections (gRPC). A call finding every one at the server's "
    "MAX_CONCURRENT_STREAMS is not sent and counts as sent late",
)
flags.DEFINE_integer(
    "rest_connections",
    8000,
    "Most sockets open (REST; one call each at a time). A call waiting "
    "for one counts as sent late.",
)
flags.DEFINE_string("model_base_path", "", "Exported MNIST (default: export).")
flags.DEFINE_string("mnist_dir", "/tmp", "Where the MNIST data set is.")
flags.DEFINE_integer("num_images", 100, "Distinct images sent.")
flags.DEFINE_list("server_args", [], "More flags for the server.")
flags.DEFINE_integer("max_batch_size", 32, "Batching parameter.")
flags.DEFINE_integer("batch_timeout_micros", 0, "Batching parameter.")
flags.DEFINE_integer("max_enqueued_batches", 64, "Batching parameter.")
flags.DEFINE_integer("num_batch_threads", 0, "Batching (0: the cores).")
flags.DEFINE_string("out", "", "Also write the Markdown table here.")


@dataclasses.dataclass(frozen=True)
class Row:
  protocol: str
  batching: str
  shedding: str
  capacity_per_s: float
  multiple: float  # of capacity; 0 for the closed loop itself
  level: open_loop_node.Level
  server_cpu_s: float  # the server's CPU over the level (and its drain)
  other_cpu_s: float  # the host's busy CPU less the server's and client's


def goodput_share(row: Row) -> float:
  return row.level.goodput_per_s / row.capacity_per_s


def markdown(rows: Sequence[Row], deadline_ms: float) -> str:
  """One line per offered load; a closed-loop line gives each C."""
  out = [
      f"Deadline {deadline_ms:g} ms. C: closed-loop capacity. Goodput: "
      "answers within the deadline. Shed: UNAVAILABLE / 503 with a retry "
      "hint (without one, counted apart). Timed out: DEADLINE_EXCEEDED / "
      "504 or no answer by the deadline, plus OK answers after it. p50/p99: "
      "answers within the deadline, from when the call was due. Client: "
      "the generator's CPU seconds, and calls it sent > 10 ms late "
      "(a row marked ! did not offer its rate). Server: its CPU seconds. "
      "Others: CPU seconds the host spent on anything else meanwhile.",
      "",
      "| API | batching | shedding | offered | offered/s | goodput/s |"
      " % of C | shed | timed out | errors | p50 ms | p99 ms | client |"
      " server | others |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for row in rows:
    level = row.level
    lat = level.latency_ms or {}
    if row.multiple:
      offered = f"{row.multiple:g}x C"
      offered_rate = f"{level.offered_per_s:,.0f}"
      share = f"{100 * goodput_share(row):.0f}%"
    else:
      offered, offered_rate, share = "C (closed)", "-", "100%"
    shed = f"{level.shed:,}"
    if level.shed_no_hint:
      shed += f" (+{level.shed_no_hint:,} no hint)"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(level.errors.items()))
    mark = "" if level.valid or not row.multiple else " !"
    out.append(
        f"| {row.protocol} | {row.batching} | {row.shedding} | {offered} |"
        f" {offered_rate} | {level.goodput_per_s:,.0f} | {share} | {shed} |"
        f" {level.timed_out + level.ok_late:,} | {errors or 0} |"
        f" {lat.get('p50', float('nan')):.1f} |"
        f" {lat.get('p99', float('nan')):.1f} |"
        f" {level.client_cpu_s:.1f} s, {level.late_sent:,} late{mark} |"
        f" {row.server_cpu_s:.1f} s | {row.other_cpu_s:.1f} s |"
    )
  return "\n".join(out) + "\n"


def _config(protocol: str, num_images: int) -> load_config.LoadConfig:
  """What the bodies are built from (the generator is the client)."""
  return load_config.LoadConfig(
      server="",
      protocol=protocol,
      mnist_dir=flags.FLAGS.mnist_dir,
      num_images=num_images,
  )


def _log(message: str) -> None:
  print(f"[overload {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _measured(pid: int, generate) -> tuple[open_loop_node.Level, float, float]:
  """generate()'s level, the server's CPU, and everyone else's meanwhile."""
  server = probes.process_tree_cpu_s(pid) or 0.0
  host = probes.host_cpu_ticks()
  began = time.monotonic()
  level = generate()
  wall = time.monotonic() - began
  server = (probes.process_tree_cpu_s(pid) or 0.0) - server
  after = probes.host_cpu_ticks()
  busy = 0.0
  if host and after:
    busy = probes.host_cpu_split(host, after)["busy_pct"] / 100 * wall
  return level, server, max(0.0, busy - server - level.client_cpu_s)


class Driver:
  """Starts servers and generators in one work directory."""

  def __init__(self, work_dir: str, stack: contextlib.ExitStack):
    self._dir = work_dir
    self._stack = stack
    self._bodies: dict[str, str] = {}

  def _path(self, name: str) -> str:
    return os.path.join(self._dir, name)

  def model(self) -> str:
    f = flags.FLAGS
    if f.model_base_path:
      return os.path.abspath(f.model_base_path)
    base = self._path("mnist_model")
    _log(f"exporting MNIST to {base}")
    processes.run_to_completion(
        "mnist_saved_model",
        processes.binary_command(
            "tensorflow_serving/example",
            "mnist_saved_model",
            "tensorflow_serving.example.mnist_saved_model",
        )
        + ["--training_iteration=100", f"--work_dir={f.mnist_dir}", base],
        self._path("export.log"),
        timeout_s=600,
    )
    return base

  def bodies(self, protocol: str) -> str:
    """The body file for `protocol`, written once."""
    if protocol not in self._bodies:
      f = flags.FLAGS
      config = _config(protocol, f.num_images)
      images = workload.load_images(config)
      if protocol == "grpc":
        bodies = [
            open_loop_node.grpc_frame(workload.grpc_body(config, image))
            for image in images
        ]
      else:
        bodies = [workload.rest_body(config, image) for image in images]
      path = self._path(f"bodies_{protocol}.bin")
      open_loop_node.write_bodies(path, bodies)
      self._bodies[protocol] = path
    return self._bodies[protocol]

  @contextlib.contextmanager
  def serve(self, model: str, batching: str, shedding: str):
    """A server until the block ends: (grpc_port, rest_port, pid)."""
    f = flags.FLAGS
    grpc_port = processes.pick_unused_port()
    rest_port = processes.pick_unused_port()
    argv = processes.binary_command(
        "tensorflow_serving/model_servers",
        "tensorflow_model_server",
        "tensorflow_serving.model_servers.main",
    ) + [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--model_name=mnist",
        f"--model_base_path={model}",
        f"--rest_api_timeout_in_ms={f.deadline_ms:.0f}",
        f"--shed_by_deadline={SHEDDING[shedding]}",
        *f.server_args,
    ]
    if batching == "on":
      params = self._path("batching_parameters.txt")
      threads = f.num_batch_threads or os.cpu_count() or 1
      with open(params, "w", encoding="utf-8") as out:
        out.write(
            f"max_batch_size {{ value: {f.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {f.batch_timeout_micros} }}\n"
            f"max_enqueued_batches {{ value: {f.max_enqueued_batches} }}\n"
            f"num_batch_threads {{ value: {threads} }}\n"
        )
      argv += ["--enable_batching", f"--batching_parameters_file={params}"]
    label = f"batching_{batching}_{shedding}"
    server = processes.Child(label, argv, self._path(f"server_{label}.log"))
    self._stack.callback(server.stop)
    _log(f"{label}: pid {server.pid}: {' '.join(argv)}")
    try:
      config = _config("grpc", 1)
      body = workload.grpc_body(config, workload.load_images(config)[0])
      processes.wait_until(
          server,
          lambda: processes.grpc_predict_probe(f"127.0.0.1:{grpc_port}", body),
          180,
      )
      yield grpc_port, rest_port, server.pid
    finally:
      _log(f"{label}: stopped (exit {server.stop()})")

  def target(self, protocol: str, port: int) -> open_loop_node.Target:
    f = flags.FLAGS
    grpc = protocol == "grpc"
    return open_loop_node.Target(
        protocol=protocol,
        host="127.0.0.1",
        port=port,
        path=(
            load_config.PREDICT_METHOD
            if grpc
            else _config(protocol, 1).rest_path
        ),
        bodies_file=self.bodies(protocol),
        connections=f.grpc_connections if grpc else f.rest_connections,
    )

  def capacity(
      self, target: open_loop_node.Target, pid: int, tag: str
  ) -> tuple[open_loop_node.Level, float, float]:
    f = flags.FLAGS
    measured = _measured(
        pid,
        lambda: open_loop_node.run(
            target,
            self._path(f"capacity_{tag}"),
            mode="closed",
            duration_s=f.capacity_duration,
            deadline_ms=0,
            concurrency=f.capacity_concurrency,
            warmup_s=1.0,
        ),
    )
    _log(f"{tag}: capacity {measured[0].goodput_per_s:,.0f}/s")
    return measured

  def levels(
      self, target: open_loop_node.Target, capacity: float, pid: int, tag: str
  ) -> list[tuple[float, open_loop_node.Level, float, float]]:
    f = flags.FLAGS
    out = []
    for multiple in (float(m) for m in f.multiples):
      time.sleep(f.pause)
      level, server, others = _measured(
          pid,
          lambda m=multiple: open_loop_node.run(
              target,
              self._path(f"open_{tag}_{m:g}x"),
              mode="open",
              rate_per_s=m * capacity,
              duration_s=f.duration,
              deadline_ms=f.deadline_ms,
          ),
      )
      _log(
          f"{tag} {multiple:g}x: offered {level.offered_per_s:,.0f}/s,"
          f" goodput {level.goodput_per_s:,.0f}/s, shed {level.shed:,},"
          f" timed out {level.timed_out + level.ok_late:,},"
          f" late sent {level.late_sent:,}, CPU server {server:.1f} s"
          f" client {level.client_cpu_s:.1f} s others {others:.1f} s"
      )
      out.append((multiple, level, server, others))
    return out


def run(work_dir: str) -> list[Row]:
  f = flags.FLAGS
  rows: list[Row] = []
  with contextlib.ExitStack() as stack:
    driver = Driver(work_dir, stack)
    model = driver.model()
    for batching in f.batching:
      capacities: dict[str, float] = {}
      for shedding in f.shedding:
        with driver.serve(model, batching, shedding) as (grpc, rest, pid):
          for protocol in f.protocols:
            port = grpc if protocol == "grpc" else rest
            target = driver.target(protocol, port)
            tag = f"{protocol}_batching_{batching}_{shedding}"
            if protocol not in capacities:
              closed, cpu, others = driver.capacity(target, pid, tag)
              capacities[protocol] = closed.goodput_per_s
              rows.append(
                  Row(protocol, batching, shedding, 0, 0, closed, cpu, others)
              )
            capacity = capacities[protocol]
            for multiple, level, cpu, others in driver.levels(
                target, capacity, pid, tag
            ):
              rows.append(
                  Row(
                      protocol,
                      batching,
                      shedding,
                      capacity,
                      multiple,
                      level,
                      cpu,
                      others,
                  )
              )
  order = {p: i for i, p in enumerate(f.protocols)}
  rows.sort(key=lambda r: order[r.protocol])  # stable: grouped by API
  return rows


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  with tempfile.TemporaryDirectory(prefix="overload_") as work_dir:
    rows = run(work_dir)
  table = markdown(rows, f.deadline_ms)
  print(table)
  if f.out:
    with open(f.out, "w", encoding="utf-8") as out:
      out.write(table)


if __name__ == "__main__":
  app.run(main)
