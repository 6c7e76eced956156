r"""Benchmarks our model server against its peers, with the clients users run.

Exports the MNIST tutorial model once (or takes --model_base_path), runs the
in-process loop (which also writes the expected scores every answer is
checked against), then for each server configuration starts the server on
free loopback ports, waits until a real Predict succeeds, loads it with each
client at each --concurrency (one load_test process per client), and stops
it. Then a num_batch_threads sweep of the batched rows. Prints Markdown
tables and the throughput targets (targets.py), each a ratio within this one
run.

  bazel run -c opt //tensorflow_serving/tools/benchmark:compare -- \
      --duration=10 --runs=3 --out=/tmp/tf_serving_benchmark.md

Servers (--configs): ours_grpc, ours_grpc_batching, naive_grpc (a plain
grpc.aio PredictionService), ours_rest, ours_rest_batching, fastapi (FastAPI
on uvicorn). gRPC rows are loaded with the official grpcio client and h2load,
REST rows with wrk (--grpc_clients, --rest_clients; `raw` adds the
project's own light clients as a further column).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import peer_servers
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import report as report_lib
from tensorflow_serving.tools.benchmark import rows as rows_lib
from tensorflow_serving.tools.benchmark import targets as targets_lib
from tensorflow_serving.tools.benchmark import workload

_BENCH = "tensorflow_serving/tools/benchmark"
_BASELINES = _BENCH + "/baselines"
CONFIGS = rows_lib.CONFIGS
ALL_CONFIGS = rows_lib.ALL_CONFIGS

flags.DEFINE_list(
    "configs",
    list(CONFIGS),
    "Server configurations to run, of "
    f"{list(ALL_CONFIGS)} (the v2 ones: ours on the v2 protocol and the "
    "peers, loaded with wrk and h2load).",
)
flags.DEFINE_list(
    "concurrency",
    ["1", "8", "32"],
    "Concurrency levels to load each configuration at.",
)
flags.DEFINE_list(
    "grpc_clients",
    ["grpcio", "h2load", "raw"],
    f"Clients for gRPC rows, of {load_config.CLIENTS['grpc']}.",
)
flags.DEFINE_list(
    "rest_clients",
    ["wrk", "raw"],
    f"Clients for REST rows, of {load_config.CLIENTS['rest']}.",
)
flags.DEFINE_float("duration", 10.0, "Seconds measured per load test.")
flags.DEFINE_float("warmup", 2.0, "Seconds of load before each measurement.")
flags.DEFINE_integer(
    "runs",
    1,
    "Run the whole comparison this many times in a row; each run's "
    "targets are judged on its own, and a last table says which held in "
    "every run.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "repeats",
    1,
    "Within a run, measure every configuration this many times, "
    "alternating the order, and keep each row's best throughput.",
    lower_bound=1,
)
flags.DEFINE_float(
    "in_process_duration",
    None,
    "Seconds for the in-process loop (default: --duration); 0 skips it.",
)
flags.DEFINE_string(
    "out",
    "/tmp/tf_serving_benchmark.md",
    "Write the Markdown report here (relative to the directory "
    "`bazel run` was started in).",
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
# Batching parameters for ours (a BatchingParameters text proto): as a user
# would first configure it.
flags.DEFINE_integer("max_batch_size", 32, "BatchingParameters field.")
flags.DEFINE_integer(
    "batch_timeout_micros",
    0,
    "BatchingParameters field; 0 runs whatever is queued as soon as a "
    "batch thread is free.",
)
flags.DEFINE_integer("max_enqueued_batches", 64, "BatchingParameters field.")
flags.DEFINE_integer(
    "num_batch_threads",
    0,
    "BatchingParameters field; 0: the number of cores, as upstream's "
    "default and a user's first configuration.",
    lower_bound=0,
)
flags.DEFINE_list(
    "sweep_num_batch_threads",
    ["auto"],
    "num_batch_threads values for the sweep of the batched rows; auto: 1 to "
    "the number of cores (powers of two and the core count past 4 cores); "
    "empty: no sweep.",
)
flags.DEFINE_integer(
    "sweep_concurrency", 32, "Concurrency of the sweep.", lower_bound=1
)
flags.DEFINE_list(
    "sweep_configs",
    ["ours_grpc_batching", "ours_rest_batching"],
    "Batched configurations the sweep runs (those also in --configs).",
)
# The load generator.
flags.DEFINE_integer(
    "processes", 1, "load_test --processes (the raw REST client only)."
)
flags.DEFINE_integer("grpc_channels", 1, "load_test --grpc_channels.")
flags.DEFINE_bool(
    "check_scores",
    True,
    "Check every answer's scores against the in-process ones.",
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


def cores() -> int:
  try:
    return len(os.sched_getaffinity(0)) or 1
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def sweep_points(spec: Sequence[str], n: int) -> list[int]:
  """The sweep's num_batch_threads values ("auto" expands for n cores)."""
  points: set[int] = set()
  for item in spec:
    if item == "auto":
      points.update(range(1, n + 1) if n <= 4 else (1, 2, 4, n))
      points.update(p for p in (8, 16, 32) if p < n)
    elif item:
      points.add(int(item))
  if any(p < 1 for p in points):
    raise ValueError("num_batch_threads must be at least 1")
  return sorted(points)


@dataclasses.dataclass
class Options:
  """Everything a comparison needs; main() fills it from the flags."""

  configs: Sequence[str] = tuple(CONFIGS)
  concurrency: Sequence[int] = (1, 8, 32)
  grpc_clients: Sequence[str] = ("grpcio", "h2load", "raw")
  rest_clients: Sequence[str] = ("wrk", "raw")
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
  num_batch_threads: int = 0  # 0: cores()
  sweep_num_batch_threads: Sequence[int] = ()
  sweep_concurrency: int = 32
  sweep_configs: Sequence[str] = ("ours_grpc_batching", "ours_rest_batching")
  processes: int = 1
  grpc_channels: int = 1
  check: bool = True
  startup_timeout_s: float = 180.0
  work_dir: str = ""
  log: Callable[[str], None] = print

  @property
  def batch_threads(self) -> int:
    return self.num_batch_threads or cores()

  def batching_parameters(self, threads: int | None = None) -> str:
    return (
        f"max_batch_size {{ value: {self.max_batch_size} }}\n"
        f"batch_timeout_micros {{ value: {self.batch_timeout_micros} }}\n"
        f"max_enqueued_batches {{ value: {self.max_enqueued_batches} }}\n"
        f"num_batch_threads {{ value: {threads or self.batch_threads} }}\n"
    )

  def clients_of(self, protocol: str) -> Sequence[str]:
    return self.grpc_clients if protocol == "grpc" else self.rest_clients

  def sweep_clients(self, protocol: str) -> list[str]:
    """The user clients of the sweep (the first client if none is)."""
    judged = (
        targets_lib.GRPC_CLIENTS
        if protocol == "grpc"
        else targets_lib.REST_CLIENTS
    )
    given = self.clients_of(protocol)
    return [c for c in given if c in judged] or list(given[:1])

  def validate(self) -> None:
    unknown = [name for name in self.configs if name not in ALL_CONFIGS]
    if unknown:
      raise ValueError(f"unknown configs {unknown}; known: {list(ALL_CONFIGS)}")
    for protocol in load_config.PROTOCOLS:
      bad = [
          c
          for c in self.clients_of(protocol)
          if c not in load_config.CLIENTS[protocol]
      ]
      if bad:
        raise ValueError(
            f"unknown {protocol} clients {bad}; known: "
            f"{load_config.CLIENTS[protocol]}"
        )


@dataclasses.dataclass
class Report:
  rows: list[rows_lib.Row]
  sweep: list[rows_lib.Row]
  in_process: dict[str, Any] | None
  verdicts: list[targets_lib.Verdict]
  markdown: str
  context: dict[str, str]


class Runner:
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
    if os.path.isdir(base):  # exported by an earlier run in this work dir
      return base
    self._log(
        f"exporting MNIST ({self._o.training_iteration} iterations) to {base}"
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

  def in_process(
      self, model: str, suffix: str
  ) -> tuple[dict[str, Any] | None, str]:
    """Runs the in-process loop; returns (its numbers, expected scores)."""
    expected = self._path("expected_scores.npy")
    duration = self._o.in_process_duration_s
    if duration is None:
      duration = self._o.duration_s
    out = self._path(f"in_process{suffix}.json")
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
        self._path(f"in_process{suffix}.log"),
        timeout_s=duration + self._o.warmup_s + 300,
    )
    if not duration:
      return None, expected
    with open(out, encoding="utf-8") as f:
      return json.load(f), expected

  def _server_argv(
      self,
      config: rows_lib.ServerConfig,
      model: str,
      grpc_port: int,
      rest_port: int,
      threads: int,
  ) -> list[str]:
    if config.ours:
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
        params = self._path(f"batching_parameters_t{threads}.txt")
        with open(params, "w", encoding="utf-8") as f:
          f.write(self._o.batching_parameters(threads))
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
      self, config: rows_lib.ServerConfig, address: str
  ) -> Callable[[], str | None]:
    lconfig = load_config.LoadConfig(
        server=address,
        protocol=config.protocol,
        api=config.api,
        signature_name=_signature_of(config),
        num_images=1,
        mnist_dir=self._o.mnist_dir,
    )
    if self._images is None:
      self._images = workload.load_images(lconfig)
    image = self._images[0]
    if config.protocol == "grpc":
      body = workload.grpc_request_body(lconfig, image)
      method = lconfig.grpc_method
      return lambda: processes.grpc_predict_probe(address, body, method=method)
    body, headers = workload.rest_request(lconfig, image)
    url = f"http://{address}{lconfig.rest_path}"
    key = "predictions" if config.api == "predict" else "outputs"
    return lambda: processes.rest_predict_probe(url, body, headers, key)

  def _load_test(
      self,
      config: rows_lib.ServerConfig,
      client: str,
      address: str,
      server_pid: int,
      concurrency: Sequence[int],
      expected: str,
      tag: str,
  ) -> list[dict[str, Any]]:
    out = self._path(f"load_{tag}.json")
    o = self._o
    argv = processes.binary_command(
        _BENCH, "load_test", _BENCH.replace("/", ".") + ".load_test"
    ) + [
        f"--server={address}",
        f"--protocol={config.protocol}",
        f"--api={config.api}",
        f"--signature_name={_signature_of(config)}",
        f"--client={client}",
        f"--concurrency={','.join(map(str, concurrency))}",
        f"--duration={o.duration_s}",
        f"--warmup={o.warmup_s}",
        f"--server_pid={server_pid}",
        f"--grpc_channels={o.grpc_channels}",
        f"--mnist_dir={o.mnist_dir}",
        f"--num_images={o.num_images}",
        f"--json_out={out}",
    ]
    if client == "raw" and config.protocol == "rest":
      argv.append(f"--processes={min(o.processes, min(concurrency))}")
    if o.check:
      argv += ["--check", f"--expected_scores={expected}"]
    processes.run_to_completion(
        f"load_test {tag}",
        argv,
        self._path(f"load_{tag}.log"),
        timeout_s=len(concurrency) * (o.warmup_s + o.duration_s + 90) + 120,
    )
    with open(out, encoding="utf-8") as f:
      return json.load(f)["runs"]

  @contextlib.contextmanager
  def serve(
      self,
      config: rows_lib.ServerConfig,
      model: str,
      threads: int,
      suffix: str,
  ) -> Iterator[tuple[processes.Child, str]]:
    """Starts a server and waits until it answers; stops it on exit.

    Raises ServerStartError (with the most telling log line) when it does not
    start or answer.
    """
    grpc_port = processes.pick_unused_port()
    rest_port = processes.pick_unused_port()
    port = grpc_port if config.protocol == "grpc" else rest_port
    address = f"127.0.0.1:{port}"
    label = self.label(config, threads)
    try:
      env = None
      if config.peer:
        peer = peer_servers.launch(
            config.peer,
            model,
            grpc_port,
            rest_port,
            self._path(f"peer_{label}{suffix}"),
        )
        argv, env = peer.argv, peer.env
        self._log(f"{label}: {peer.settings}")
      else:
        argv = self._server_argv(config, model, grpc_port, rest_port, threads)
      server = processes.Child(
          config.name, argv, self._path(f"server_{label}{suffix}.log"), env
      )
      self._log(f"{label}: pid {server.pid}: {' '.join(argv)}")
    except (OSError, subprocess.SubprocessError) as exc:
      raise ServerStartError(f"could not start: {exc}") from exc
    self._stack.callback(server.stop)
    try:
      try:
        processes.wait_until(
            server, self._probe(config, address), self._o.startup_timeout_s
        )
      except (RuntimeError, TimeoutError) as exc:
        why = _startup_failure(str(exc).strip().splitlines())
        self._log(f"{label}: not serving: {why}")
        raise ServerStartError(why) from exc
      yield server, address
    finally:
      code = server.stop()
      self._log(f"{label}: stopped (exit {code})")

  @staticmethod
  def label(config: rows_lib.ServerConfig, threads: int) -> str:
    return config.name + (f"_t{threads}" if config.batching else "")

  def server_rows(
      self,
      config: rows_lib.ServerConfig,
      model: str,
      expected: str,
      suffix: str,
      clients: Sequence[str],
      concurrency: Sequence[int],
      threads: int,
  ) -> list[rows_lib.Row]:
    """Starts the server, loads it with each client, stops it."""
    batch_threads = threads if config.batching else None
    rows = [
        rows_lib.Row(config, client, c, batch_threads)
        for client in clients
        for c in concurrency
    ]
    label = self.label(config, threads)
    try:
      with self.serve(config, model, threads, suffix) as (server, address):
        for client in clients:
          mine = [row for row in rows if row.client == client]
          self._log(
              f"{label}: {client} at concurrency "
              f"{','.join(map(str, concurrency))} (load average {_loadavg()})"
          )
          try:
            summaries = self._load_test(
                config,
                client,
                address,
                server.pid,
                concurrency,
                expected,
                f"{label}_{client}{suffix}",
            )
          except RuntimeError as exc:
            for row in mine:
              row.failure = str(exc).strip().splitlines()[0]
            self._log(f"{label}: {client} failed: {exc}")
            if not server.alive():
              break
            continue
          for row, summary in zip(mine, summaries):
            row.summary = summary
            self._log(f"{label} {client} c={row.concurrency}: {_brief(row)}")
        if not server.alive():
          for row in rows:
            if row.summary is None and not row.failure:
              row.failure = f"server exited with {server.proc.returncode}"
    except ServerStartError as exc:
      for row in rows:
        row.failure = str(exc)
    return rows


def _signature_of(config: rows_lib.ServerConfig) -> str:
  # The peers serve the one signature as the model; ours is asked for it.
  return "" if config.peer else "predict_images"


def _clients(
    config: rows_lib.ServerConfig, clients: Sequence[str]
) -> list[str]:
  """The given clients that can send config.api's requests."""
  if config.api == "predict":
    return list(clients)
  return [c for c in clients if c in load_config.V2_CLIENTS]


class ServerStartError(Exception):
  """A server did not start, or did not answer in time."""


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


def _brief(row: rows_lib.Row) -> str:
  s = row.summary or {}
  latency = s.get("latency_ms") or {}

  def num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)

  return (
      f"{s.get('throughput_rps', 0):.0f} req/s, p50 "
      f"{num(latency.get('p50'), '.2f')} ms, p99 "
      f"{num(latency.get('p99'), '.2f')} ms, errors {s.get('errors')}, "
      f"server {num(s.get('server_cpu_us_per_request'), '.0f')} us/req, "
      f"loadgen CPU {num(s.get('loadgen_cpu_pct'), '.0f')}%"
  )


def settings(options: Options) -> list[str]:
  """The report's lines on what was measured, and how."""
  return [
      "model: MNIST softmax (`predict_images`, 784 floats in, 10 out), "
      "one image per request; "
      f"{options.duration_s:g} s measured after {options.warmup_s:g} s "
      "warmup per row",
      f"gRPC clients: {', '.join(options.grpc_clients)}; REST clients: "
      f"{', '.join(options.rest_clients)}; each in its own process; "
      + (
          "every answer checked against the in-process scores"
          if options.check
          else "answers shape-checked only"
      ),
      "batching (ours): `"
      + options.batching_parameters().strip().replace("\n", " ")
      + "`",
      "CPU % is of one core "
      f"({100 * (os.cpu_count() or 1)}% = every core of this host)",
  ]


def run_once(options: Options, work_dir: str, index: int = 0) -> Report:
  """One whole comparison; everything started is stopped before returning."""
  context = {
      "date": (
          datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
      ),
      "load_before": _loadavg(),
  }
  run_suffix = f"_run{index + 1}" if index else ""
  with contextlib.ExitStack() as stack:
    runner = Runner(options, work_dir, stack)
    model = runner.export_model()
    in_process, expected = runner.in_process(model, run_suffix)
    runs: dict[tuple[Any, ...], list[rows_lib.Row]] = {}
    for attempt in range(options.repeats):
      order = list(options.configs)
      if attempt % 2:
        order.reverse()
      suffix = run_suffix + (f"_r{attempt + 1}" if options.repeats > 1 else "")
      for name in order:
        config = ALL_CONFIGS[name]
        for row in runner.server_rows(
            config,
            model,
            expected,
            suffix,
            _clients(config, options.clients_of(config.protocol)),
            options.concurrency,
            options.batch_threads,
        ):
          runs.setdefault(row.key, []).append(row)
    rows = [rows_lib.best(attempts) for attempts in runs.values()]
    order = {name: i for i, name in enumerate(ALL_CONFIGS)}
    rows.sort(
        key=lambda r: (
            order[r.config.name],
            options.clients_of(r.config.protocol).index(r.client),
            r.concurrency,
        )
    )
    sweep: list[rows_lib.Row] = []
    for threads in options.sweep_num_batch_threads:
      for name in options.sweep_configs:
        if name not in options.configs or not ALL_CONFIGS[name].batching:
          continue
        config = ALL_CONFIGS[name]
        sweep += runner.server_rows(
            config,
            model,
            expected,
            run_suffix + "_sweep",
            options.sweep_clients(config.protocol),
            [options.sweep_concurrency],
            threads,
        )
  context["load_after"] = _loadavg()
  verdicts = targets_lib.evaluate(rows, in_process, options.concurrency, sweep)
  text = report_lib.markdown(
      title="TensorFlow Serving (Python) throughput comparison",
      context=context,
      settings=settings(options),
      rows=rows,
      sweep=sweep,
      concurrency=options.concurrency,
      in_process=in_process,
      verdicts=verdicts,
      repeats=options.repeats,
  )
  return Report(rows, sweep, in_process, verdicts, text, context)


def run(options: Options, runs: int = 1) -> list[Report]:
  """`runs` consecutive comparisons; writes --out and --json_out."""
  options.validate()
  work_dir = options.work_dir or tempfile.mkdtemp(prefix="tf_serving_bench_")
  os.makedirs(work_dir, exist_ok=True)
  reports = []
  try:
    for index in range(runs):
      if runs > 1:
        options.log(f"[compare] run {index + 1} of {runs}")
      reports.append(run_once(options, work_dir, index))
  finally:
    if not options.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
  text = markdown(reports)
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
              "runs": [
                  {
                      "context": r.context,
                      "in_process": r.in_process,
                      "rows": [row.to_json() for row in r.rows],
                      "sweep": [row.to_json() for row in r.sweep],
                      "targets": [dataclasses.asdict(v) for v in r.verdicts],
                  }
                  for r in reports
              ],
          },
          f,
          indent=2,
          sort_keys=True,
      )
      f.write("\n")
  return reports


def markdown(reports: Sequence[Report]) -> str:
  """Every run's report, then (for several) the targets across runs."""
  if len(reports) == 1:
    return reports[0].markdown
  parts = [
      r.markdown.replace("# ", f"# Run {i + 1} of {len(reports)}: ", 1)
      for i, r in enumerate(reports)
  ]
  parts.append(report_lib.across_runs([r.verdicts for r in reports]))
  return "\n".join(parts)


def options_from_flags() -> Options:
  return Options(
      configs=FLAGS.configs,
      concurrency=[int(c) for c in FLAGS.concurrency],
      grpc_clients=FLAGS.grpc_clients,
      rest_clients=FLAGS.rest_clients,
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
      sweep_num_batch_threads=sweep_points(
          FLAGS.sweep_num_batch_threads, cores()
      ),
      sweep_concurrency=FLAGS.sweep_concurrency,
      sweep_configs=FLAGS.sweep_configs,
      processes=FLAGS.processes,
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
    options.validate()
  except ValueError as exc:
    raise app.UsageError(str(exc)) from exc
  # `bazel run` runs in the runfiles tree: resolve against the user's cwd.
  cwd = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  for field in ("out", "json_out", "work_dir", "model_base_path"):
    value = getattr(options, field)
    if value and not os.path.isabs(value):
      setattr(options, field, os.path.join(cwd, value))
  try:
    reports = run(options, FLAGS.runs)
  except KeyboardInterrupt:
    print(
        "\ninterrupted; every server and load test started was stopped",
        file=sys.stderr,
    )
    sys.exit(130)
  print()
  print(markdown(reports), end="")
  print(f"\nWritten to {options.out}")


if __name__ == "__main__":
  app.run(main)
