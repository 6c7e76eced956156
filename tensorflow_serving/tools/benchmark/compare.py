r"""Benchmarks our model server against its peers on one exported MNIST model.

Exports the MNIST tutorial model once (or takes --model_base_path), runs the
in-process baseline (which also writes the expected scores every answer is
checked against), then for each server configuration starts the server on
free loopback ports, waits until a real Predict succeeds, runs load_test at
each --concurrency, and stops it. Prints a Markdown table and the targets of
the throughput work, each ours-vs-baseline ratio taken from this one run.

  bazel run -c opt //tensorflow_serving/tools/benchmark:compare -- \
      --duration=10 --out=/tmp/tf_serving_benchmark.md

Configurations (--configs): ours_grpc, ours_grpc_batching, ours_rest,
ours_rest_batching, naive_grpc (a plain grpc.aio PredictionService) and
fastapi (a hand-written FastAPI + uvicorn app).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import loadgen
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import wire

_BENCH = "tensorflow_serving/tools/benchmark"
_BASELINES = _BENCH + "/baselines"


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """One row group of the table: which server, which API, batching or not."""

  name: str
  server: str
  protocol: str
  batching: bool | None  # None: the server has no such option.

  @property
  def batching_label(self) -> str:
    return {True: "on", False: "off", None: "-"}[self.batching]


CONFIGS = {
    c.name: c
    for c in (
        ServerConfig("ours_grpc", "ours", "grpc", False),
        ServerConfig("ours_grpc_batching", "ours", "grpc", True),
        ServerConfig("ours_rest", "ours", "rest", False),
        ServerConfig("ours_rest_batching", "ours", "rest", True),
        ServerConfig("naive_grpc", "naive grpc.aio", "grpc", None),
        ServerConfig("fastapi", "FastAPI+uvicorn", "rest", None),
    )
}
# Rows measured while other processes used more than this much CPU (in % of
# one core), or the hypervisor stole more, are flagged as disturbed.
OTHERS_LIMIT_PCT = 25.0
STEAL_LIMIT_PCT = 15.0
# The baseline each of our configurations is judged against.
BASELINE_OF = {"grpc": "naive_grpc", "rest": "fastapi"}

flags.DEFINE_list("configs", list(CONFIGS), "Server configurations to run.")
flags.DEFINE_list(
    "concurrency",
    ["1", "8", "32"],
    "Concurrency levels to load each configuration at.",
)
flags.DEFINE_float("duration", 10.0, "Seconds measured per load test.")
flags.DEFINE_float("warmup", 2.0, "Seconds of load before each measurement.")
flags.DEFINE_integer(
    "repeats",
    1,
    "Run every configuration this many times, alternating "
    "the order, and keep each row's best throughput: on a "
    "shared host, interference only ever slows a run down.",
    lower_bound=1,
)
flags.DEFINE_float(
    "in_process_duration",
    None,
    "Seconds for the in-process loop (default: --duration); " "0 skips it.",
)
flags.DEFINE_string(
    "out",
    "/tmp/tf_serving_benchmark.md",
    "Write the Markdown report here (absolute: `bazel run` "
    "runs in the runfiles tree).",
)
flags.DEFINE_string("json_out", "", "Also write every number here as JSON.")
flags.DEFINE_string(
    "model_base_path",
    "",
    "Serve this model (version dirs of the MNIST tutorial "
    "model) instead of exporting one.",
)
flags.DEFINE_integer(
    "training_iteration", 100, "Training steps of the exported model."
)
flags.DEFINE_string(
    "mnist_dir", "/tmp", "Directory checked first for the MNIST .gz files."
)
flags.DEFINE_integer("num_images", 0, "Send only the first N test images.")
flags.DEFINE_string(
    "server_binary",
    "",
    "Our tensorflow_model_server to run (default: the Bazel "
    "target from the runfiles, else `python -m`).",
)
flags.DEFINE_list(
    "server_args",
    [],
    "Extra flags for our server, e.g. "
    "--server_args=--tensorflow_intra_op_parallelism=1",
)
# Batching parameters for ours (a BatchingParameters text proto).
flags.DEFINE_integer("max_batch_size", 32, "BatchingParameters field.")
flags.DEFINE_integer(
    "batch_timeout_micros",
    0,
    "BatchingParameters field; 0 runs whatever is queued "
    "as soon as a batch thread is free, which adds no "
    "latency at concurrency 1.",
)
flags.DEFINE_integer("max_enqueued_batches", 64, "BatchingParameters field.")
flags.DEFINE_integer(
    "num_batch_threads",
    1,
    "BatchingParameters field. One thread: the event loop "
    "needs the other core, and while one batch runs the "
    "next one fills up instead of a second thread taking a "
    "small one (2 threads: about 15% fewer REST req/s here).",
)
# The load generator.
flags.DEFINE_integer("processes", 1, "load_test --processes.")
flags.DEFINE_enum(
    "rest_client", "raw", loadgen.REST_CLIENTS, "load_test --rest_client."
)
flags.DEFINE_enum(
    "grpc_client", "raw", loadgen.GRPC_CLIENTS, "load_test --grpc_client."
)
flags.DEFINE_integer("grpc_channels", 1, "load_test --grpc_channels.")
flags.DEFINE_bool(
    "check_scores",
    True,
    "Check every answer's scores against the in-process ones "
    "(ignored with --rest_client=wrk).",
)
flags.DEFINE_float(
    "startup_timeout",
    180.0,
    "Seconds a server gets to load the model and answer.",
)
flags.DEFINE_string(
    "work_dir",
    "",
    "Keep the model, logs and raw results here (default: a "
    "temporary directory, removed at the end).",
)
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Options:
  """Everything a comparison needs; main() fills it from the flags."""

  configs: Sequence[str] = tuple(CONFIGS)
  concurrency: Sequence[int] = (1, 8, 32)
  duration_s: float = 10.0
  warmup_s: float = 2.0
  repeats: int = 1
  in_process_duration_s: float | None = None
  out: str = "/tmp/tf_serving_benchmark.md"
  json_out: str = ""
  model_base_path: str = ""
  training_iteration: int = 100
  mnist_dir: str = "/tmp"
  num_images: int = 0
  server_binary: str = ""
  server_args: Sequence[str] = ()
  max_batch_size: int = 32
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 64
  num_batch_threads: int = 2
  processes: int = 1
  rest_client: str = "raw"
  grpc_client: str = "raw"
  grpc_channels: int = 1
  check: bool = True
  startup_timeout_s: float = 180.0
  work_dir: str = ""
  log: Callable[[str], None] = print

  def batching_parameters(self) -> str:
    return (
        f"max_batch_size {{ value: {self.max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}\n"
        f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
        f"num_batch_threads {{ value: {self.num_batch_threads} }}\n"
    )


@dataclasses.dataclass
class Row:
  """One load test (or the reason it could not run)."""

  config: ServerConfig
  concurrency: int
  summary: dict[str, Any] | None = None
  failure: str = ""
  # Throughput of every repeat that ran (the summary is the best one's).
  all_rps: list[float] = dataclasses.field(default_factory=list)

  @property
  def others_pct(self) -> float | None:
    """CPU other processes used meanwhile, in % of one core (>= 0)."""
    s = self.summary or {}
    host = s.get("host_cpu") or {}
    if "busy_pct" not in host:
      return None
    return max(
        0.0,
        host["busy_pct"]
        - (s.get("server_cpu_pct") or 0)
        - (s.get("loadgen_cpu_pct") or 0),
    )

  @property
  def disturbed(self) -> bool:
    """Whether other VMs or processes took a noticeable share of the CPU."""
    host = (self.summary or {}).get("host_cpu") or {}
    return (self.others_pct or 0) > OTHERS_LIMIT_PCT or host.get(
        "steal_pct", 0
    ) > STEAL_LIMIT_PCT

  def value(self, key: str) -> float | None:
    if self.summary is None:
      return None
    if key in ("p50", "p90", "p99", "max"):
      latency = self.summary.get("latency_ms")
      return latency[key] if latency else None
    return self.summary.get(key)


@dataclasses.dataclass
class Report:
  rows: list[Row]
  in_process: dict[str, Any] | None
  targets: list[tuple[str, str]]  # (verdict, line)
  markdown: str


class _Runner:
  """Runs one comparison in a work directory; stops every child it started."""

  def __init__(
      self, options: Options, work_dir: str, stack: contextlib.ExitStack
  ):
    self._o = options
    self._dir = work_dir
    self._stack = stack
    self._images: Any = None

  def _path(self, name: str) -> str:
    return os.path.join(self._dir, name)

  def _log(self, message: str) -> None:
    self._o.log(f"[compare {time.strftime('%H:%M:%S')}] {message}")

  def export_model(self) -> str:
    if self._o.model_base_path:
      return os.path.abspath(self._o.model_base_path)
    base = self._path("mnist_model")
    self._log(
        f"exporting MNIST ({self._o.training_iteration} iterations) "
        f"to {base}"
    )
    processes.run_to_completion(
        "mnist_saved_model",
        processes.binary_command(
            "tensorflow_serving/example",
            "mnist_saved_model",
            "tensorflow_serving.example.mnist_saved_model",
        )
        + [
            f"--training_iteration={self._o.training_iteration}",
            f"--work_dir={self._o.mnist_dir}",
            base,
        ],
        self._path("export.log"),
        timeout_s=600,
    )
    return base

  def in_process(self, model: str) -> tuple[dict[str, Any] | None, str]:
    """Runs the in-process loop; returns (its numbers, expected scores)."""
    expected = self._path("expected_scores.npy")
    duration = self._o.in_process_duration_s
    if duration is None:
      duration = self._o.duration_s
    out = self._path("in_process.json")
    self._log(f"in-process loop, {duration:g} s")
    processes.run_to_completion(
        "in_process",
        processes.binary_command(
            _BASELINES,
            "in_process",
            _BASELINES.replace("/", ".") + ".in_process",
        )
        + [
            f"--model_base_path={model}",
            f"--duration={max(duration, 0.1)}",
            f"--warmup={self._o.warmup_s if duration else 0}",
            f"--mnist_dir={self._o.mnist_dir}",
            f"--num_images={self._o.num_images}",
            f"--expected_scores_out={expected}",
            f"--json_out={out}",
        ],
        self._path("in_process.log"),
        timeout_s=duration + self._o.warmup_s + 300,
    )
    if not duration:
      return None, expected
    with open(out, encoding="utf-8") as f:
      return json.load(f), expected

  def _server_argv(
      self, config: ServerConfig, model: str, grpc_port: int, rest_port: int
  ) -> list[str]:
    if config.server == "ours":
      argv = (
          [self._o.server_binary]
          if self._o.server_binary
          else processes.binary_command(
              "tensorflow_serving/model_servers",
              "tensorflow_model_server",
              "tensorflow_serving.model_servers.main",
          )
      )
      argv += [
          f"--port={grpc_port}",
          f"--rest_api_port={rest_port}",
          "--model_name=mnist",
          f"--model_base_path={model}",
          *self._o.server_args,
      ]
      if config.batching:
        params = self._path("batching_parameters.txt")
        with open(params, "w", encoding="utf-8") as f:
          f.write(self._o.batching_parameters())
        argv += ["--enable_batching", f"--batching_parameters_file={params}"]
      return argv
    name = (
        "naive_grpc_server" if config.protocol == "grpc" else "fastapi_server"
    )
    port = grpc_port if config.protocol == "grpc" else rest_port
    return processes.binary_command(
        _BASELINES, name, _BASELINES.replace("/", ".") + "." + name
    ) + [f"--port={port}", "--model_name=mnist", f"--model_base_path={model}"]

  def _probe(
      self, config: ServerConfig, address: str
  ) -> Callable[[], str | None]:
    lconfig = loadgen.Config(
        server=address,
        protocol=config.protocol,
        num_images=1,
        mnist_dir=self._o.mnist_dir,
    )
    if self._images is None:
      self._images = loadgen.load_images(lconfig)
    image = self._images[0]
    if config.protocol == "grpc":
      body = wire.encode_predict_request(
          lconfig.model_name,
          lconfig.signature_name,
          {lconfig.input_name: image[None]},
      )
      return lambda: processes.grpc_predict_probe(address, body)
    body = loadgen.rest_body(lconfig, image)
    url = f"http://{address}{lconfig.rest_path}"
    return lambda: processes.rest_predict_probe(url, body)

  def _load_test(
      self,
      config: ServerConfig,
      address: str,
      server_pid: int,
      concurrency: int,
      expected: str,
      suffix: str,
  ) -> dict[str, Any]:
    tag = f"{config.name}_c{concurrency}{suffix}"
    out = self._path(f"load_{tag}.json")
    check = self._o.check and not (
        config.protocol == "rest" and self._o.rest_client == "wrk"
    )
    argv = processes.binary_command(
        _BENCH, "load_test", _BENCH.replace("/", ".") + ".load_test"
    ) + [
        f"--server={address}",
        f"--protocol={config.protocol}",
        f"--concurrency={concurrency}",
        f"--duration={self._o.duration_s}",
        f"--warmup={self._o.warmup_s}",
        f"--server_pid={server_pid}",
        f"--processes={min(self._o.processes, concurrency)}",
        f"--rest_client={self._o.rest_client}",
        f"--grpc_client={self._o.grpc_client}",
        f"--grpc_channels={self._o.grpc_channels}",
        f"--mnist_dir={self._o.mnist_dir}",
        f"--num_images={self._o.num_images}",
        f"--json_out={out}",
    ]
    if check:
      argv += ["--check", f"--expected_scores={expected}"]
    processes.run_to_completion(
        f"load_test {tag}",
        argv,
        self._path(f"load_{tag}.log"),
        timeout_s=self._o.warmup_s + self._o.duration_s + 180,
    )
    with open(out, encoding="utf-8") as f:
      return json.load(f)

  def server_rows(
      self, config: ServerConfig, model: str, expected: str, suffix: str = ""
  ) -> list[Row]:
    """Starts the server, loads it at each concurrency, stops it."""
    rows = [Row(config, c) for c in self._o.concurrency]
    grpc_port = processes.pick_unused_port()
    rest_port = processes.pick_unused_port()
    address = (
        f"127.0.0.1:{grpc_port}"
        if config.protocol == "grpc"
        else f"127.0.0.1:{rest_port}"
    )
    try:
      argv = self._server_argv(config, model, grpc_port, rest_port)
      server = processes.Child(
          config.name, argv, self._path(f"server_{config.name}{suffix}.log")
      )
      self._log(f"{config.name}: pid {server.pid}: {' '.join(argv)}")
    except OSError as exc:
      for row in rows:
        row.failure = f"could not start: {exc}"
      return rows
    self._stack.callback(server.stop)
    try:
      try:
        processes.wait_until(
            server, self._probe(config, address), self._o.startup_timeout_s
        )
      except (RuntimeError, TimeoutError) as exc:
        reason = str(exc).strip().splitlines()
        why = _startup_failure(reason)
        self._log(f"{config.name}: not serving: {why}")
        for row in rows:
          row.failure = why
        return rows
      for row in rows:
        self._log(
            f"{config.name}: load at concurrency {row.concurrency} "
            f"(load average {_loadavg()})"
        )
        try:
          row.summary = self._load_test(
              config, address, server.pid, row.concurrency, expected, suffix
          )
        except RuntimeError as exc:
          row.failure = str(exc).strip().splitlines()[0]
          self._log(f"{config.name}: load test failed: {exc}")
          if not server.alive():
            break
          continue
        self._log(f"{config.name} c={row.concurrency}: " f"{_row_brief(row)}")
      if not server.alive():
        for row in rows:
          if row.summary is None and not row.failure:
            row.failure = f"server exited with {server.proc.returncode}"
    finally:
      code = server.stop()
      self._log(f"{config.name}: stopped (exit {code})")
    return rows


def _best(attempts: Sequence[Row]) -> Row:
  """The attempt with the highest throughput, remembering all of them."""
  done = [r for r in attempts if r.summary is not None]
  if not done:
    return attempts[0]
  best = max(done, key=lambda r: r.summary["throughput_rps"])
  best.all_rps = [r.summary["throughput_rps"] for r in done]
  return best


def _startup_failure(lines: list[str]) -> str:
  """The most telling line of a server that would not start."""
  for line in reversed(lines):
    if "enable_batching" in line or "batching_parameters" in line:
      return "server rejected batching flags: " + line.strip()[:200]
  for line in reversed(lines):
    if any(word in line for word in ("Error", "error", "FATAL", "Traceback")):
      return line.strip()[:200]
  return lines[0][:200] if lines else "unknown failure"


def _loadavg() -> str:
  try:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
  except OSError:
    return "n/a"


def _row_brief(row: Row) -> str:
  s = row.summary or {}
  latency = s.get("latency_ms") or {}
  return (
      f"{s.get('throughput_rps', 0):.0f} req/s, p50 "
      f"{latency.get('p50', float('nan')):.2f} ms, p99 "
      f"{latency.get('p99', float('nan')):.2f} ms, errors "
      f"{s.get('errors')}, loadgen CPU "
      f"{_num(s.get('loadgen_cpu_pct'), '.0f')}%"
  )


def _num(value: float | None, spec: str = ".1f") -> str:
  return "n/a" if value is None else format(value, spec)


# --------------------------------------------------------------------------
# Targets of the throughput issue, each judged from this run alone.


def _find(rows: Sequence[Row], name: str, concurrency: int) -> Row | None:
  for row in rows:
    if row.config.name == name and row.concurrency == concurrency:
      return row
  return None


def _verdict(ok: bool | None) -> str:
  return {True: "PASS", False: "FAIL", None: "N/A"}[ok]


def evaluate_targets(
    rows: Sequence[Row],
    in_process: dict[str, Any] | None,
    concurrency: Sequence[int],
) -> list[tuple[str, str]]:
  """(verdict, explanation) for each target; N/A when a number is missing."""
  out: list[tuple[str, str]] = []

  def rate(name: str, c: int) -> float | None:
    row = _find(rows, name, c)
    if row is None or row.summary is None or row.summary.get("errors"):
      return None
    return row.value("throughput_rps")

  def ratio_line(ours: str, base: str, c: int, factor: float) -> None:
    mine, theirs = rate(ours, c), rate(base, c)
    if mine is None or theirs is None or not theirs:
      out.append(
          (
              "N/A",
              f"{ours} vs {base} at concurrency {c}: missing or "
              f"erroneous run (target >= {factor:g}x)",
          )
      )
      return
    ratio = mine / theirs
    out.append(
        (
            _verdict(ratio >= factor),
            f"{ours} vs {base} at concurrency {c}: {mine:.0f} / "
            f"{theirs:.0f} req/s = {ratio:.2f}x (target >= {factor:g}x)",
        )
    )

  top = 32 if 32 in concurrency else max(concurrency)
  # 1. gRPC with batching: >= 4x naive grpc.aio, and above the in-process loop.
  ratio_line("ours_grpc_batching", "naive_grpc", top, 4.0)
  mine = rate("ours_grpc_batching", top)
  if mine is None or not in_process:
    out.append(
        (
            "N/A",
            f"ours_grpc_batching at concurrency {top} vs the "
            "in-process loop: missing run",
        )
    )
  else:
    loop = in_process["throughput_rps"]
    out.append(
        (
            _verdict(mine > loop),
            f"ours_grpc_batching at concurrency {top} vs the in-process "
            f"loop: {mine:.0f} vs {loop:.0f} calls/s = {mine / loop:.2f}x "
            "(target > 1x)",
        )
    )
  # 2. REST with batching: >= 3x FastAPI, p99 < 25 ms.
  ratio_line("ours_rest_batching", "fastapi", top, 3.0)
  row = _find(rows, "ours_rest_batching", top)
  p99 = row.value("p99") if row else None
  out.append(
      (
          "N/A" if p99 is None else _verdict(p99 < 25.0),
          f"ours_rest_batching p99 at concurrency {top}: "
          f"{_num(p99, '.2f')} ms (target < 25 ms)",
      )
  )
  # 3. Batching off: >= 1.3x the matching baseline at every concurrency.
  for protocol, base in BASELINE_OF.items():
    for c in concurrency:
      ratio_line(f"ours_{protocol}", base, c, 1.3)
  # 4. Concurrency 1: p50 no higher than the baseline's.
  if 1 in concurrency:
    for protocol, base in BASELINE_OF.items():
      for ours in (f"ours_{protocol}", f"ours_{protocol}_batching"):
        mine_row, base_row = _find(rows, ours, 1), _find(rows, base, 1)
        mine_p50 = mine_row.value("p50") if mine_row else None
        base_p50 = base_row.value("p50") if base_row else None
        if mine_p50 is None or base_p50 is None:
          out.append(
              ("N/A", f"{ours} vs {base} p50 at concurrency 1: " "missing run")
          )
          continue
        out.append(
            (
                _verdict(mine_p50 <= base_p50),
                f"{ours} vs {base} p50 at concurrency 1: "
                f"{mine_p50:.2f} vs {base_p50:.2f} ms (target <=)",
            )
        )
  return out


# --------------------------------------------------------------------------
# The report.

_HEADER = (
    "| server | protocol | batching | concurrency | req/s | p50 ms | "
    "p90 ms | p99 ms | errors | server CPU % | loadgen CPU % |"
)


def markdown(
    options: Options,
    rows: Sequence[Row],
    in_process: dict[str, Any] | None,
    targets: Sequence[tuple[str, str]],
    context: dict[str, str],
) -> str:
  lines = [
      "# TensorFlow Serving (Python) throughput comparison",
      "",
      f"- date: {context['date']}; host: {os.cpu_count()} CPUs; load "
      f"average before/after: {context['load_before']} / "
      f"{context['load_after']}",
      f"- model: MNIST softmax (`predict_images`, 784 floats in, 10 out), "
      f"one image per request; {options.duration_s:g} s measured after "
      f"{options.warmup_s:g} s warmup per row",
      f"- load generator: gRPC client `{options.grpc_client}`, REST client "
      f"`{options.rest_client}`, {options.processes} process(es); responses "
      + (
          "checked against the in-process scores"
          if options.check
          else "shape-checked"
      ),
      f"- batching (ours): `{options.batching_parameters().strip()}`".replace(
          "\n", " "
      ),
      "- CPU % is of one core (200% = both cores of a 2-core host)",
      "",
      _HEADER,
      "|" + "---|" * 11,
  ]
  for row in rows:
    c = row.config
    head = (
        f"| {c.server} | {c.protocol} | {c.batching_label} | "
        f"{row.concurrency} |"
    )
    if row.summary is None:
      lines.append(
          f"{head} failed: {row.failure.replace('|', '/')} " "| | | | | | |"
      )
      continue
    s = row.summary
    errors = str(s["errors"])
    if s["errors"]:
      errors += (
          " ("
          + ", ".join(f"{k}: {v}" for k, v in s["errors_by_status"].items())
          + ")"
      )
    rate = f"{s['throughput_rps']:.0f}"
    if len(row.all_rps) > 1:
      rate += f" (min {min(row.all_rps):.0f})"
    if row.disturbed:
      rate += " *"
    lines.append(
        f"{head} {rate} | {_num(row.value('p50'), '.2f')} "
        f"| {_num(row.value('p90'), '.2f')} | {_num(row.value('p99'), '.2f')} "
        f"| {errors} | {_num(s.get('server_cpu_pct'), '.0f')} "
        f"| {_num(s.get('loadgen_cpu_pct'), '.0f')} |"
    )
  if in_process:
    latency = in_process["latency_ms"]
    lines.append(
        f"| in-process loop (1 thread) | - | - | 1 | "
        f"{in_process['throughput_rps']:.0f} | {latency['p50']:.2f} | "
        f"{latency['p90']:.2f} | {latency['p99']:.2f} | 0 | "
        f"{in_process['cpu_pct']:.0f} | - |"
    )
  if any(row.disturbed for row in rows):
    lines += [
        "",
        f"\\* measured while other processes used more than "
        f"{OTHERS_LIMIT_PCT:.0f}% of a core or the hypervisor stole more "
        f"than {STEAL_LIMIT_PCT:.0f}% (see below): likely understated.",
    ]
  if options.repeats > 1:
    lines += [
        "",
        f"Each row is the best of {options.repeats} runs (order "
        "alternated between runs); `min` is the worst.",
    ]
  lines += [
      "",
      "## Where the CPU went",
      "",
      "Host CPU is every process on the machine, in % of one core; "
      "steal is CPU the hypervisor gave to other VMs (high steal makes "
      "every number of the run lower and noisier).",
      "",
      "| server | protocol | batching | concurrency | server's busiest "
      "threads (% of one core) | host busy % | of which others % | "
      "host idle % | host steal % | server us/request | loadgen "
      "us/request |",
      "|" + "---|" * 11,
  ]
  for row in rows:
    if row.summary is None:
      continue
    c, s = row.config, row.summary
    threads = (
        ", ".join(
            f"{t['name']} {t['cpu_pct']:.0f}"
            for t in s.get("server_threads") or ()
        )
        or "n/a"
    )
    host = s.get("host_cpu") or {}
    server_us = None
    if s.get("server_cpu_pct") is not None and s["throughput_rps"]:
      server_us = 1e4 * s["server_cpu_pct"] / s["throughput_rps"]
    lines.append(
        f"| {c.server} | {c.protocol} | {c.batching_label} | "
        f"{row.concurrency} | {threads} | {_num(host.get('busy_pct'), '.0f')} "
        f"| {_num(row.others_pct, '.0f')} | {_num(host.get('idle_pct'), '.0f')} | "
        f"{_num(host.get('steal_pct'), '.0f')} | {_num(server_us, '.0f')} | "
        f"{_num(s.get('loadgen_cpu_us_per_request'), '.0f')} |"
    )
  lines += ["", "## Targets", ""]
  lines += [f"- **{verdict}** {line}" for verdict, line in targets]
  busiest = [
      (row.value("loadgen_cpu_pct") or 0, row) for row in rows if row.summary
  ]
  if busiest:
    cpu, row = max(busiest, key=lambda item: item[0])
    lines += [
        "",
        f"Busiest load generator: {cpu:.0f}% of one core "
        f"({row.config.name} at concurrency {row.concurrency}, "
        f"{_num(row.value('loadgen_cpu_us_per_request'), '.0f')} us of "
        "client CPU per request). The generator shares the host's cores with "
        "the server, so its CPU is CPU the server did not get.",
    ]
  return "\n".join(lines) + "\n"


def run(options: Options) -> Report:
  """Runs the comparison; everything started is stopped before returning."""
  unknown = [name for name in options.configs if name not in CONFIGS]
  if unknown:
    raise ValueError(f"unknown configs {unknown}; known: {list(CONFIGS)}")
  work_dir = options.work_dir or tempfile.mkdtemp(prefix="tf_serving_bench_")
  os.makedirs(work_dir, exist_ok=True)
  context = {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "load_before": _loadavg(),
  }
  rows: list[Row] = []
  try:
    with contextlib.ExitStack() as stack:
      runner = _Runner(options, work_dir, stack)
      model = runner.export_model()
      in_process, expected = runner.in_process(model)
      runs: dict[tuple[str, int], list[Row]] = {}
      for attempt in range(options.repeats):
        order = list(options.configs)
        if attempt % 2:
          order.reverse()
        suffix = f"_r{attempt + 1}" if options.repeats > 1 else ""
        for name in order:
          for row in runner.server_rows(CONFIGS[name], model, expected, suffix):
            runs.setdefault((name, row.concurrency), []).append(row)
      rows = [
          _best(runs[(name, c)])
          for name in options.configs
          for c in options.concurrency
      ]
  finally:
    if not options.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
  context["load_after"] = _loadavg()
  targets = evaluate_targets(rows, in_process, options.concurrency)
  text = markdown(options, rows, in_process, targets, context)
  if options.out:
    os.makedirs(os.path.dirname(os.path.abspath(options.out)), exist_ok=True)
    with open(options.out, "w", encoding="utf-8") as f:
      f.write(text)
  if options.json_out:
    with open(options.json_out, "w", encoding="utf-8") as f:
      json.dump(
          {
              "options": {
                  k: v
                  for k, v in dataclasses.asdict(options).items()
                  if k != "log"
              },
              "context": context,
              "in_process": in_process,
              "rows": [
                  {
                      "config": dataclasses.asdict(r.config),
                      "concurrency": r.concurrency,
                      "summary": r.summary,
                      "failure": r.failure,
                      "all_rps": r.all_rps,
                      "disturbed": r.disturbed,
                  }
                  for r in rows
              ],
              "targets": [{"verdict": v, "line": line} for v, line in targets],
          },
          f,
          indent=2,
          sort_keys=True,
      )
      f.write("\n")
  return Report(rows, in_process, targets, text)


def options_from_flags() -> Options:
  return Options(
      configs=FLAGS.configs,
      concurrency=[int(c) for c in FLAGS.concurrency],
      duration_s=FLAGS.duration,
      warmup_s=FLAGS.warmup,
      repeats=FLAGS.repeats,
      in_process_duration_s=FLAGS.in_process_duration,
      out=FLAGS.out,
      json_out=FLAGS.json_out,
      model_base_path=FLAGS.model_base_path,
      training_iteration=FLAGS.training_iteration,
      mnist_dir=FLAGS.mnist_dir,
      num_images=FLAGS.num_images,
      server_binary=FLAGS.server_binary,
      server_args=FLAGS.server_args,
      max_batch_size=FLAGS.max_batch_size,
      batch_timeout_micros=FLAGS.batch_timeout_micros,
      max_enqueued_batches=FLAGS.max_enqueued_batches,
      num_batch_threads=FLAGS.num_batch_threads,
      processes=FLAGS.processes,
      rest_client=FLAGS.rest_client,
      grpc_client=FLAGS.grpc_client,
      grpc_channels=FLAGS.grpc_channels,
      check=FLAGS.check_scores,
      startup_timeout_s=FLAGS.startup_timeout,
      work_dir=FLAGS.work_dir,
  )


def _raise_on_sigterm(signum, frame) -> None:
  del frame
  # Unwinds through every `finally`, which stops the children.
  raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Ctrl-C raises KeyboardInterrupt even where the shell started us with
  # SIGINT ignored (a background job); SIGTERM/SIGHUP unwind the same way.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  signal.signal(signal.SIGTERM, _raise_on_sigterm)
  signal.signal(signal.SIGHUP, _raise_on_sigterm)
  try:
    options = options_from_flags()
  except ValueError as exc:
    raise app.UsageError(str(exc)) from exc
  # `bazel run` runs in the runfiles tree: resolve against the user's cwd.
  cwd = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  for field in ("out", "json_out", "work_dir", "model_base_path"):
    value = getattr(options, field)
    if value and not os.path.isabs(value):
      setattr(options, field, os.path.join(cwd, value))
  try:
    report = run(options)
  except KeyboardInterrupt:
    print(
        "\ninterrupted; every server and load test started was stopped",
        file=sys.stderr,
    )
    sys.exit(130)
  print()
  print(report.markdown, end="")
  print(f"\nWritten to {options.out}")


if __name__ == "__main__":
  app.run(main)
