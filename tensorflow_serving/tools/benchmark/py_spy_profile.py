r"""Where a request's microseconds go in the server, per layer (py-spy).

Starts each configuration as the comparison does, loads it with a user's
client (h2load for gRPC and wrk for REST by default: the lightest, so the
generator takes the least CPU from the server), and meanwhile records the
server with py-spy (`--nonblocking`: sampled without pausing it, so the
load is not disturbed; idle threads are not sampled). Each sample is put in
a layer (layers.py: transport, codec, handlers, runner and worker-pool hop,
batching, model run, metrics, event loop), and a layer's share of the
samples times the server's CPU per request (from /proc, same window) gives
its microseconds per request. Also lists the busiest thread groups and leaf
functions, and keeps the raw stacks (collapsed format, e.g. for
speedscope or flamegraph.pl) in --out_dir.

  bazel run -c opt //tensorflow_serving/tools/benchmark:profile -- \
      --duration=10 --out=/tmp/tf_serving_profile.md

Needs ptrace rights over the server (root, or kernel.yama.ptrace_scope=0).
The throughput printed is that of a profiled server: it is not a result.
"""

from __future__ import annotations

from collections.abc import Sequence
import contextlib
import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import compare
from tensorflow_serving.tools.benchmark import layers
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import loadgen
from tensorflow_serving.tools.benchmark import orchestration
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import rows as rows_lib
from tensorflow_serving.tools.benchmark import server_lifecycle

flags.DEFINE_list(
    "profile_configs",
    ["ours_grpc", "ours_grpc_batching", "ours_rest", "ours_rest_batching"],
    f"Server configurations to profile, of {list(compare.ALL_CONFIGS)}.",
)
flags.DEFINE_integer("profile_concurrency", 32, "Requests in flight.")
flags.DEFINE_string("grpc_client", "h2load", "Client for gRPC rows.")
flags.DEFINE_string("rest_client", "wrk", "Client for REST rows.")
flags.DEFINE_integer("rate", 250, "py-spy samples per second.")
flags.DEFINE_bool(
    "native",
    False,
    "py-spy --native: also sample C frames (uvloop, TensorFlow's runtime); "
    "py-spy then pauses the server for each sample, which slows it.",
)
flags.DEFINE_string(
    "out_dir",
    "",
    "Keep each configuration's raw py-spy stacks here (default: --out's "
    "directory).",
)
flags.DEFINE_integer("top", 12, "Leaf functions listed per configuration.")
FLAGS = flags.FLAGS


@dataclasses.dataclass
class Result:
  config: rows_lib.ServerConfig
  client: str
  summary: dict[str, Any] | None
  profile: layers.Profile | None
  # The server's threads' CPU over the recording: {tid: (name, seconds)}.
  thread_cpu: dict[int, tuple[str, float]]
  raw_path: str
  failure: str = ""


def py_spy() -> str:
  """The py-spy next to this interpreter (the venv's), else on PATH."""
  beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
  found = beside if os.access(beside, os.X_OK) else shutil.which("py-spy")
  if not found:
    raise FileNotFoundError("py-spy is not installed (see requirements.txt)")
  return found


class Recording:
  """py-spy recording `pid` for `duration_s`, from `delay_s` after start().

  Also takes each of the server's threads' CPU over the recording. join()
  waits for it (at once if it never started) and raises what py-spy said
  if it failed.
  """

  def __init__(
      self,
      pid: int,
      out: str,
      delay_s: float,
      duration_s: float,
      rate: int,
      native: bool,
  ):
    self._argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--duration",
        str(max(1, round(duration_s))),
        "--format",
        "raw",
        "--output",
        out,
        "--threads",
    ]
    # py-spy reads native stacks only from a paused process.
    self._argv.append("--native" if native else "--nonblocking")
    self._pid = pid
    self._delay_s = delay_s
    self._timeout_s = duration_s + 60
    self._error = "the load test never started measuring"
    self.thread_cpu: dict[int, tuple[str, float]] = {}
    self._thread = threading.Thread(target=self._run, name="py-spy")

  def start(self) -> None:
    """Called as the load test's measured window opens."""
    self._thread.start()

  def _run(self) -> None:
    self._error = ""
    threading.Event().wait(self._delay_s)
    before = probes.thread_cpu_s(self._pid)
    try:
      done = subprocess.run(
          self._argv,
          check=False,
          capture_output=True,
          text=True,
          timeout=self._timeout_s,
      )
    except (OSError, subprocess.SubprocessError) as exc:
      self._error = f"py-spy: {exc}"
      return
    after = probes.thread_cpu_s(self._pid)
    self.thread_cpu = {
        tid: (name, cpu - before.get(tid, (name, 0.0))[1])
        for tid, (name, cpu) in after.items()
    }
    if done.returncode:
      self._error = (
          f"py-spy exited with {done.returncode}: {done.stderr[-500:]}"
      )

  def join(self) -> None:
    if self._thread.ident is not None:
      self._thread.join()
    if self._error:
      raise RuntimeError(self._error)


def profile_one(
    runner: orchestration.Runner,
    options: orchestration.Options,
    config: rows_lib.ServerConfig,
    client: str,
    model: str,
    expected: str,
    out_dir: str,
) -> Result:
  """One configuration under load, recorded by py-spy mid-window."""
  raw = os.path.join(out_dir, f"profile_{config.name}_{client}.txt")
  try:
    with runner.servers.serve(
        config, model, options.batch_threads, "_profile"
    ) as (
        server,
        address,
    ):
      load = load_config.LoadConfig(
          server=address,
          protocol=config.protocol,
          client=client,
          concurrency=FLAGS.profile_concurrency,
          duration_s=options.duration_s,
          warmup_s=options.warmup_s,
          check=options.check,
          expected_scores=expected if options.check else "",
          server_pid=server.pid,
          mnist_dir=options.mnist_dir,
          num_images=options.num_images,
      )
      # Inside the measured window: from just after it opens to just
      # before it closes.
      spy = Recording(
          server.pid,
          raw,
          delay_s=0.25,
          duration_s=max(1.0, options.duration_s - 1.0),
          rate=FLAGS.rate,
          native=FLAGS.native,
      )
      try:
        summary = loadgen.run(load, on_measure=spy.start)
      finally:
        spy.join()
  except (server_lifecycle.ServerStartError, RuntimeError, OSError) as exc:
    return Result(config, client, None, None, {}, raw, str(exc).splitlines()[0])
  with open(raw, encoding="utf-8", errors="replace") as f:
    profile = layers.parse(f)
  return Result(config, client, summary, profile, spy.thread_cpu, raw)


def markdown(results: Sequence[Result], options: orchestration.Options) -> str:
  now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
  lines = [
      "# Where a request's CPU goes (py-spy)",
      "",
      f"- date: {now}; host: {os.cpu_count()} CPUs; "
      f"{FLAGS.profile_concurrency} requests in flight; py-spy "
      f"{FLAGS.rate} Hz, "
      + ("--native (pausing the server)" if FLAGS.native else "--nonblocking"),
      "- batching (ours): `"
      + options.batching_parameters().strip().replace("\n", " ")
      + "`",
      "- a layer's us per request = its share of the server's CPU (each "
      "thread's CPU from /proc, split as its py-spy samples are) x the "
      "server's CPU per request in the load test's window",
      "",
  ]
  for result in results:
    c = result.config
    lines += [
        f"## {c.server} {c.protocol}, batching {c.batching_label}, "
        f"{result.client}",
        "",
    ]
    if result.profile is None or result.summary is None:
      lines += [f"failed: {result.failure}", ""]
      continue
    s = result.summary
    us = s.get("server_cpu_us_per_request")
    cpu = layers.cpu_by_layer(result.profile, result.thread_cpu)
    groups = layers.cpu_by_thread_group(result.profile, result.thread_cpu)
    total = sum(groups.values()) or 1.0
    lines += [
        f"{s['throughput_rps']:.0f} req/s under the profiler, "
        f"{s['errors']} errors, server CPU "
        f"{'n/a' if us is None else f'{us:.0f}'} us per request, "
        f"{result.profile.total} samples ({result.profile.idle} set aside "
        f"as waiting: the loop polling, lock waits, idle workers); raw "
        f"stacks: `{result.raw_path}`",
        "",
        *layers.table(cpu, us),
        "",
        "The server's CPU by thread: "
        + ", ".join(
            f"{name} {100 * seconds / total:.0f}%"
            for name, seconds in groups.most_common()
        ),
        "",
        "| busiest leaf functions | share of samples |",
        "|---|---|",
        *(
            f"| `{name}` | {100 * n / result.profile.total:.1f}% |"
            for name, n in result.profile.leaves.most_common(FLAGS.top)
        ),
        "",
    ]
  return "\n".join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    options = compare.options_from_flags()
    options.validate()
    py_spy()
    # The in-process loop only writes the scores answers are checked with.
    options.in_process_duration_s = 0
  except (ValueError, FileNotFoundError) as exc:
    raise app.UsageError(str(exc)) from exc
  unknown = [c for c in FLAGS.profile_configs if c not in compare.ALL_CONFIGS]
  if unknown:
    raise app.UsageError(f"unknown configs {unknown}")
  cwd = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  # --out is compare's flag; its default names the comparison's report.
  out = options.out if FLAGS["out"].present else "/tmp/tf_serving_profile.md"
  out = os.path.join(cwd, out) if out else ""
  out_dir = os.path.join(cwd, FLAGS.out_dir or os.path.dirname(out) or ".")
  os.makedirs(out_dir, exist_ok=True)
  work_dir = options.work_dir or tempfile.mkdtemp(prefix="tf_serving_prof_")
  results = []
  try:
    with contextlib.ExitStack() as stack:
      runner = orchestration.Runner(options, work_dir, stack)
      model = runner.export_model()
      _, expected = runner.in_process(model, "")
      for name in FLAGS.profile_configs:
        config = compare.ALL_CONFIGS[name]
        client = (
            FLAGS.grpc_client
            if config.protocol == "grpc"
            else FLAGS.rest_client
        )
        options.log(f"[profile] {name} with {client}")
        results.append(
            profile_one(
                runner, options, config, client, model, expected, out_dir
            )
        )
  finally:
    if not options.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
  text = markdown(results, options)
  if out:
    with open(out, "w", encoding="utf-8") as f:
      f.write(text)
  print(text)
  print(f"Written to {out}")


if __name__ == "__main__":
  app.run(main)
