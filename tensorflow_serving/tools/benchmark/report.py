"""The comparison's Markdown report: the tables, the sweep, the targets."""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

from tensorflow_serving.tools.benchmark import rows as rows_lib
from tensorflow_serving.tools.benchmark import targets as targets_lib

CLIENT_LABELS = {
    "grpcio": "grpcio",
    "grpcio_aio": "grpc.aio",
    "h2load": "h2load",
    "wrk": "wrk",
    "raw": "own (raw)",
    "aiohttp": "aiohttp",
}
DETAIL_HEADER = (
    "| server | API | batching | client | concurrency | req/s | p50 ms | "
    "p90 ms | p99 ms | errors | server us/req | server CPU % | loadgen "
    "CPU % | loadgen us/req | steal % | others % |"
)
_HOW = """\
How each row is loaded and checked:

- **grpcio**: the official client (`tensorflow-serving-api` stubs,
  `PredictionServiceStub(channel).Predict.future(request)`, requests built
  with `tf.make_tensor_proto`) in its own process, one channel, N calls in
  flight. Every answer's scores are compared with the in-process ones.
- **h2load**: `h2load -c1 -mN` posting one image's gRPC-framed
  PredictRequest (`content-type: application/grpc`, `te: trailers`); on
  the v2 rows a ModelInferRequest with the image in `raw_input_contents`.
  h2load sees only HTTP status, so besides its counts (all done, all 2xx)
  the DATA bytes it received must be one full answer per request, and the
  grpcio client checks 4N answers (at least 64) on the same settings
  before and after each run.
- **wrk**: `wrk -t1 -cN` with a Lua script posting one image's JSON (v2
  rows: the v2 JSON body, or with the binary tensor data extension the JSON
  header then the image's 3136 bytes); its `response` hook checks every
  answer: status 200, exactly 10 scores, each within 1e-4 of the
  in-process ones.
- **own (raw)**: this project's light asyncio clients (a hint of what the
  server does when the generator costs almost nothing, not a result);
  every answer checked.

Server us/req is all the server process's CPU (every thread, from /proc)
over the requests answered in the window; CPU % is of one core; steal is
CPU the hypervisor gave to other VMs, others % is what other processes on
this host used meanwhile. A `*` marks a disturbed row (others above
{others:.0f}% of a core, or steal above {steal:.0f}%).
"""


def _num(value: float | None, spec: str = ".1f") -> str:
  return "n/a" if value is None else format(value, spec)


def _errors(summary: dict[str, Any]) -> str:
  text = str(summary["errors"])
  if summary["errors"]:
    text += (
        " ("
        + ", ".join(f"{k}: {v}" for k, v in summary["errors_by_status"].items())
        + ")"
    )
  return text.replace("|", "/")


def _rate(row: rows_lib.Row) -> str:
  rate = f"{row.summary['throughput_rps']:.0f}"
  if len(row.all_rps) > 1:
    rate += f" (min {min(row.all_rps):.0f})"
  if row.disturbed:
    rate += " *"
  return rate


def _head(row: rows_lib.Row) -> str:
  c = row.config
  return (
      f"| {c.server} | {c.protocol} | {c.batching_label} | "
      f"{CLIENT_LABELS.get(row.client, row.client)} |"
  )


def throughput_table(
    rows: Sequence[rows_lib.Row],
    concurrency: Sequence[int],
    in_process: dict[str, Any] | None,
) -> list[str]:
  """req/s, one line per server and client, one column per concurrency."""
  lines = [
      "| server | API | batching | client | "
      + " | ".join(f"c={c}" for c in concurrency)
      + " |",
      "|" + "---|" * (4 + len(concurrency)),
  ]
  seen: dict[tuple[str, str], list[rows_lib.Row]] = {}
  for row in rows:
    seen.setdefault((row.config.name, row.client), []).append(row)
  for group in seen.values():
    cells = []
    for c in concurrency:
      row = next((r for r in group if r.concurrency == c), None)
      if row is None:
        cells.append("")
      elif row.summary is None:
        cells.append("failed")
      else:
        cell = _rate(row)
        if row.summary["errors"]:
          cell += f" ({row.summary['errors']} errors)"
        cells.append(cell)
    lines.append(f"{_head(group[0])} " + " | ".join(cells) + " |")
  if in_process:
    lines.append(
        "| in-process signature loop (1 thread) | - | - | - | "
        f"{in_process['throughput_rps']:.0f} |" + " |" * (len(concurrency) - 1)
    )
  return lines


def detail_table(
    rows: Sequence[rows_lib.Row], in_process: dict[str, Any] | None
) -> list[str]:
  lines = [DETAIL_HEADER, "|" + "---|" * 16]
  for row in rows:
    head = f"{_head(row)} {row.concurrency} |"
    if row.summary is None:
      lines.append(
          f"{head} failed: {row.failure.replace('|', '/')} |" + " |" * 10
      )
      continue
    s = row.summary
    lines.append(
        f"{head} {_rate(row)} | {_num(row.value('p50'), '.2f')} "
        f"| {_num(row.value('p90'), '.2f')} | {_num(row.value('p99'), '.2f')} "
        f"| {_errors(s)} | {_num(s.get('server_cpu_us_per_request'), '.0f')} "
        f"| {_num(s.get('server_cpu_pct'), '.0f')} "
        f"| {_num(s.get('loadgen_cpu_pct'), '.0f')} "
        f"| {_num(s.get('loadgen_cpu_us_per_request'), '.0f')} "
        f"| {_num(row.steal_pct, '.0f')} | {_num(row.others_pct, '.0f')} |"
    )
  if in_process:
    latency = in_process["latency_ms"]
    lines.append(
        "| in-process signature loop (1 thread) | - | - | - | 1 | "
        f"{in_process['throughput_rps']:.0f} | {latency['p50']:.2f} | "
        f"{latency['p90']:.2f} | {latency['p99']:.2f} | 0 | "
        f"{1e4 * in_process['cpu_pct'] / in_process['throughput_rps']:.0f} | "
        f"{in_process['cpu_pct']:.0f} | - | - | - | - |"
    )
  return lines


def sweep_table(sweep: Sequence[rows_lib.Row]) -> list[str]:
  lines = [
      "| API | client | concurrency | num_batch_threads | req/s | p50 ms | "
      "p99 ms | errors | server us/req | steal % |",
      "|" + "---|" * 10,
  ]
  for row in sorted(
      sweep,
      key=lambda r: (r.config.protocol, r.client, r.num_batch_threads or 0),
  ):
    head = (
        f"| {row.config.protocol} | "
        f"{CLIENT_LABELS.get(row.client, row.client)} | {row.concurrency} | "
        f"{row.num_batch_threads} |"
    )
    if row.summary is None:
      lines.append(
          f"{head} failed: {row.failure.replace('|', '/')} |" + " |" * 5
      )
      continue
    s = row.summary
    lines.append(
        f"{head} {_rate(row)} | {_num(row.value('p50'), '.2f')} | "
        f"{_num(row.value('p99'), '.2f')} | {_errors(s)} | "
        f"{_num(s.get('server_cpu_us_per_request'), '.0f')} | "
        f"{_num(row.steal_pct, '.0f')} |"
    )
  return lines


def threads_table(rows: Sequence[rows_lib.Row]) -> list[str]:
  lines = [
      "| server | API | batching | client | concurrency | server's busiest "
      "threads (% of one core) |",
      "|" + "---|" * 6,
  ]
  for row in rows:
    if row.summary is None:
      continue
    threads = (
        ", ".join(
            f"{t['name']} {t['cpu_pct']:.0f}"
            for t in row.summary.get("server_threads") or ()
        )
        or "n/a"
    )
    lines.append(f"{_head(row)} {row.concurrency} | {threads} |")
  return lines


def markdown(
    *,
    title: str,
    context: dict[str, str],
    settings: Sequence[str],
    rows: Sequence[rows_lib.Row],
    sweep: Sequence[rows_lib.Row],
    concurrency: Sequence[int],
    in_process: dict[str, Any] | None,
    verdicts: Sequence[targets_lib.Verdict],
    repeats: int,
) -> str:
  """One run's report."""
  lines = [
      f"# {title}",
      "",
      f"- date: {context['date']}; host: {os.cpu_count()} CPUs; load "
      f"average before/after: {context['load_before']} / "
      f"{context['load_after']}",
      *(f"- {line}" for line in settings),
      "",
      "## Throughput (req/s)",
      "",
      *throughput_table(rows, concurrency, in_process),
      "",
  ]
  if repeats > 1:
    lines += [
        f"Each row is the best of {repeats} passes (order alternated); "
        "`min` is the worst.",
        "",
    ]
  lines += [
      "## Every row",
      "",
      *detail_table(rows, in_process),
      "",
      _HOW.format(
          others=rows_lib.OTHERS_LIMIT_PCT, steal=rows_lib.STEAL_LIMIT_PCT
      ),
  ]
  if sweep:
    lines += ["## num_batch_threads sweep", "", *sweep_table(sweep), ""]
  lines += [
      "## Targets",
      "",
      *(f"- **{v.verdict}** {v.line}" for v in verdicts),
      "",
      "## Where the server's CPU went",
      "",
      *threads_table(list(rows) + list(sweep)),
  ]
  busiest = [
      (row.value("loadgen_cpu_pct") or 0, row) for row in rows if row.summary
  ]
  if busiest:
    cpu, row = max(busiest, key=lambda item: item[0])
    lines += [
        "",
        f"Busiest load generator: {cpu:.0f}% of one core "
        f"({row.config.name} with {row.client} at concurrency "
        f"{row.concurrency}, "
        f"{_num(row.value('loadgen_cpu_us_per_request'), '.0f')} us of "
        "client CPU per request). The generator shares the host's cores with "
        "the server, so its CPU is CPU the server did not get.",
    ]
  return "\n".join(lines) + "\n"


def across_runs(runs: Sequence[Sequence[targets_lib.Verdict]]) -> str:
  """Each target's verdict in every run, and whether it held in all."""
  order: list[str] = []
  by_target: dict[str, list[targets_lib.Verdict | None]] = {}
  for index, verdicts in enumerate(runs):
    for verdict in verdicts:
      if verdict.target not in by_target:
        order.append(verdict.target)
        by_target[verdict.target] = [None] * len(runs)
      by_target[verdict.target][index] = verdict
  lines = [
      f"# Targets across {len(runs)} consecutive runs",
      "",
      "| target | "
      + " | ".join(f"run {i + 1}" for i in range(len(runs)))
      + " | held in every run |",
      "|" + "---|" * (len(runs) + 2),
  ]
  for target in order:
    cells = by_target[target]
    held = all(v is not None and v.verdict == "PASS" for v in cells)
    lines.append(
        f"| {target} | "
        + " | ".join(
            "-" if v is None else f"{v.verdict}: {v.detail}" for v in cells
        )
        + f" | {'yes' if held else 'no'} |"
    )
  return "\n".join(lines) + "\n"
