"""One comparison: its options, the runs it is made of, and its report.

For each server configuration: start it (server_lifecycle.py), load it with
each client at each concurrency (one load_test process per client), stop
it; then the num_batch_threads sweep of the batched rows; then the
Markdown report with the throughput targets (targets.py), each a ratio
within this one run. compare.py is the command line over it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import time
from typing import Any

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import report as report_lib
from tensorflow_serving.tools.benchmark import rows as rows_lib
from tensorflow_serving.tools.benchmark import server_lifecycle
from tensorflow_serving.tools.benchmark import targets as targets_lib

_BENCH = "tensorflow_serving/tools/benchmark"
_BASELINES = server_lifecycle.BASELINES
CONFIGS = rows_lib.CONFIGS
ALL_CONFIGS = rows_lib.ALL_CONFIGS
ServerStartError = server_lifecycle.ServerStartError


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
    self.servers = server_lifecycle.Servers(options, work_dir, stack, self._log)

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
        f"--signature_name={config.signature_name}",
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
    label = server_lifecycle.server_label(config, threads)
    try:
      with self.servers.serve(config, model, threads, suffix) as (
          server,
          address,
      ):
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


def _clients(
    config: rows_lib.ServerConfig, clients: Sequence[str]
) -> list[str]:
  """The given clients that can send config.api's requests."""
  if config.api == "predict":
    return list(clients)
  return [c for c in clients if c in load_config.V2_CLIENTS]


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
