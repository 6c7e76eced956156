"""The throughput targets, each judged from one run's rows alone.

The host is noisy (rows move by tens of percent between runs), so every
target is a ratio between rows of the same run, or a bound on a number the
noise barely moves (server CPU per request, p99). gRPC targets are judged
once per user client (the official grpcio client and h2load), REST ones with
wrk; the project's own clients are not judged.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import Any

from tensorflow_serving.tools.benchmark import rows as rows_lib

GRPC_CLIENTS = ("grpcio", "h2load")
REST_CLIENTS = ("wrk",)
# The bounds the server is held to.
BATCHED_VS_NAIVE = 4.0
BATCHED_VS_IN_PROCESS = 1.5
UNBATCHED_VS_NAIVE = 1.3
UNBATCHED_VS_FASTAPI = 1.5
BATCHED_VS_FASTAPI = 4.0
BATCHING_COST_AT_1 = 0.9  # batching on >= 90% of batching off at c=1
REST_BATCHED_P99_MS = 20.0
THREADS_WITHIN = 0.9  # every num_batch_threads >= 90% of the best
GRPC_CPU_US = 120.0
REST_CPU_US = 200.0
# The Open Inference Protocol (v2) on the same server, against upstream's
# API, and upstream's API against the v2 peers (their best settings).
V2_GRPC_VS_PREDICT = 1.0
V2_REST_VS_PREDICT = 0.9
V2_BINARY_VS_PREDICT = 1.2
VS_V2_PEERS = 4.0
_PEER_NAMES = {"mlserver": "MLServer", "pytriton": "PyTriton"}


@dataclasses.dataclass(frozen=True)
class Verdict:
  verdict: str  # PASS, FAIL or N/A (a row is missing)
  target: str  # the same text in every run, so runs can be lined up
  detail: str  # the numbers behind the verdict

  @property
  def line(self) -> str:
    return f"{self.target}: {self.detail}"


class _Judge:
  """Collects verdicts; a row with errors fails whatever it is part of."""

  def __init__(self, rows: Sequence[rows_lib.Row]):
    self._rows = rows
    self.out: list[Verdict] = []

  def row(self, name: str, client: str, c: int) -> rows_lib.Row | None:
    return rows_lib.find(self._rows, name, client, c)

  def get(
      self, name: str, client: str, c: int, key: str
  ) -> tuple[float | None, str]:
    """(value, why it is missing) of one row's number."""
    row = self.row(name, client, c)
    if row is None or row.summary is None:
      return None, f"no {name} row at {c} with {client}"
    if row.summary.get("errors"):
      return None, f"{name} at {c} with {client} had errors"
    value = row.value(key)
    if value is None:
      return None, f"{name} at {c} with {client} has no {key}"
    return value, ""

  def add(self, ok: bool | None, target: str, detail: str) -> None:
    verdict = {True: "PASS", False: "FAIL", None: "N/A"}[ok]
    self.out.append(Verdict(verdict, target, detail))

  def missing(self, target: str, why: str) -> None:
    self.add(None if "errors" not in why else False, target, why)

  def ratio(
      self,
      target: str,
      mine: tuple[str, str, int],
      theirs: tuple[str, str, int],
      bound: float,
  ) -> None:
    a, why_a = self.get(*mine, "throughput_rps")
    b, why_b = self.get(*theirs, "throughput_rps")
    if a is None or b is None or not b:
      self.missing(target, why_a or why_b or "zero baseline")
      return
    self.add(
        a / b >= bound,
        target,
        f"{a:.0f} / {b:.0f} req/s = {a / b:.2f}x (target >= {bound:g}x)",
    )

  def bound(
      self,
      target: str,
      row: tuple[str, str, int],
      key: str,
      limit: float,
      unit: str,
      op: str = "<",
  ) -> None:
    value, why = self.get(*row, key)
    if value is None:
      self.missing(target, why)
      return
    ok = value < limit if op == "<" else value <= limit
    self.add(ok, target, f"{value:.2f} {unit} (target {op} {limit:g} {unit})")


def evaluate(
    rows: Sequence[rows_lib.Row],
    in_process: dict[str, Any] | None,
    concurrency: Sequence[int],
    sweep: Sequence[rows_lib.Row] = (),
) -> list[Verdict]:
  """Every throughput target, judged from this run's rows."""
  judge = _Judge(rows)
  top = 32 if 32 in concurrency else max(concurrency)
  present = {row.client for row in rows}
  for k in [c for c in GRPC_CLIENTS if c in present]:
    judge.ratio(
        f"gRPC batched vs naive grpc.aio at {top} [{k}]",
        ("ours_grpc_batching", k, top),
        ("naive_grpc", k, top),
        BATCHED_VS_NAIVE,
    )
    mine, why = judge.get("ours_grpc_batching", k, top, "throughput_rps")
    target = f"gRPC batched at {top} vs the in-process loop [{k}]"
    if mine is None or not in_process:
      judge.missing(target, why or "no in-process loop")
    else:
      loop = in_process["throughput_rps"]
      judge.add(
          mine / loop >= BATCHED_VS_IN_PROCESS,
          target,
          f"{mine:.0f} vs {loop:.0f} calls/s = {mine / loop:.2f}x "
          f"(target >= {BATCHED_VS_IN_PROCESS:g}x)",
      )
    for c in concurrency:
      judge.ratio(
          f"gRPC unbatched vs naive grpc.aio at {c} [{k}]",
          ("ours_grpc", k, c),
          ("naive_grpc", k, c),
          UNBATCHED_VS_NAIVE,
      )
    if 1 in concurrency:
      _p50_below(judge, "gRPC", "ours_grpc", "naive_grpc", k)
      judge.ratio(
          f"gRPC batching on vs off at 1 [{k}]",
          ("ours_grpc_batching", k, 1),
          ("ours_grpc", k, 1),
          BATCHING_COST_AT_1,
      )
    for batching, name in (("batched", "_batching"), ("unbatched", "")):
      judge.ratio(
          f"gRPC {batching}: one HTTP/2 connection with {top} streams vs "
          f"{top} REST connections [{k} vs wrk]",
          (f"ours_grpc{name}", k, top),
          (f"ours_rest{name}", "wrk", top),
          1.0,
      )
    judge.bound(
        f"gRPC server CPU per request, batched at {top} [{k}]",
        ("ours_grpc_batching", k, top),
        "server_cpu_us_per_request",
        GRPC_CPU_US,
        "us",
        "<=",
    )
  for k in [c for c in REST_CLIENTS if c in present]:
    judge.ratio(
        f"REST batched vs FastAPI at {top} [{k}]",
        ("ours_rest_batching", k, top),
        ("fastapi", k, top),
        BATCHED_VS_FASTAPI,
    )
    judge.bound(
        f"REST batched p99 at {top} [{k}]",
        ("ours_rest_batching", k, top),
        "p99",
        REST_BATCHED_P99_MS,
        "ms",
    )
    for c in concurrency:
      judge.ratio(
          f"REST unbatched vs FastAPI at {c} [{k}]",
          ("ours_rest", k, c),
          ("fastapi", k, c),
          UNBATCHED_VS_FASTAPI,
      )
    if 1 in concurrency:
      judge.ratio(
          f"REST batching on vs off at 1 [{k}]",
          ("ours_rest_batching", k, 1),
          ("ours_rest", k, 1),
          BATCHING_COST_AT_1,
      )
    judge.bound(
        f"REST server CPU per request, batched at {top} [{k}]",
        ("ours_rest_batching", k, top),
        "server_cpu_us_per_request",
        REST_CPU_US,
        "us",
        "<=",
    )
  _v2(judge, rows, top)
  _threads(judge, sweep)
  _correct(judge, list(rows) + list(sweep))
  return judge.out


def _v2(judge: _Judge, rows: Sequence[rows_lib.Row], top: int) -> None:
  """The v2 rows' targets, judged where the run has the v2 rows."""
  names = {row.config.name for row in rows}
  for name, base, bound, what in (
      (
          "ours_v2_grpc_batching",
          "ours_grpc_batching",
          V2_GRPC_VS_PREDICT,
          "v2 gRPC raw contents vs gRPC Predict",
      ),
      (
          "ours_v2_rest_batching",
          "ours_rest_batching",
          V2_REST_VS_PREDICT,
          "v2 REST JSON vs REST Predict",
      ),
      (
          "ours_v2_binary_rest_batching",
          "ours_rest_batching",
          V2_BINARY_VS_PREDICT,
          "v2 REST binary extension vs REST Predict",
      ),
  ):
    if name in names:
      client = "h2load" if name.endswith("grpc_batching") else "wrk"
      judge.ratio(
          f"{what}, batched at {top} [{client}]",
          (name, client, top),
          (base, client, top),
          bound,
      )
  for peer, label in _PEER_NAMES.items():
    for protocol, ours, client in (
        ("grpc", "ours_grpc_batching", "h2load"),
        ("rest", "ours_rest_batching", "wrk"),
    ):
      if f"{peer}_{protocol}" in names:
        judge.ratio(
            f"{'gRPC' if protocol == 'grpc' else 'REST'} Predict batched vs "
            f"{label} v2 at {top} [{client}]",
            (ours, client, top),
            (f"{peer}_{protocol}", client, top),
            VS_V2_PEERS,
        )


def _p50_below(
    judge: _Judge, api: str, ours: str, base: str, client: str
) -> None:
  target = f"{api} unbatched p50 at 1 below naive grpc.aio's [{client}]"
  mine, why_a = judge.get(ours, client, 1, "p50")
  theirs, why_b = judge.get(base, client, 1, "p50")
  if mine is None or theirs is None:
    judge.missing(target, why_a or why_b)
    return
  judge.add(mine < theirs, target, f"{mine:.2f} vs {theirs:.2f} ms (target <)")


def _threads(judge: _Judge, sweep: Sequence[rows_lib.Row]) -> None:
  """num_batch_threads from 1 to the number of cores: within 10% of best."""
  groups: dict[tuple[str, str, int], list[rows_lib.Row]] = {}
  for row in sweep:
    groups.setdefault(
        (row.config.protocol, row.client, row.concurrency), []
    ).append(row)
  for (protocol, client, c), group in sorted(groups.items()):
    target = (
        f"{'gRPC' if protocol == 'grpc' else 'REST'} batched at {c}, "
        f"num_batch_threads {min(r.num_batch_threads for r in group)}-"
        f"{max(r.num_batch_threads for r in group)}: each within "
        f"{100 * (1 - THREADS_WITHIN):.0f}% of the best [{client}]"
    )
    bad = [r for r in group if r.summary is None or r.summary.get("errors")]
    if bad:
      judge.add(
          False if any(r.summary for r in bad) else None,
          target,
          "missing or erroneous rows at num_batch_threads "
          + ", ".join(str(r.num_batch_threads) for r in bad),
      )
      continue
    rates = {r.num_batch_threads: r.value("throughput_rps") for r in group}
    top = max(rates.values())
    worst = min(rates.values())
    judge.add(
        worst >= THREADS_WITHIN * top,
        target,
        ", ".join(f"{t}: {rate:.0f}" for t, rate in sorted(rates.items()))
        + f" req/s; worst/best = {worst / top:.2f} (target >= "
        f"{THREADS_WITHIN:g})",
    )


def _correct(judge: _Judge, all_rows: Sequence[rows_lib.Row]) -> None:
  """Every answer verified and no request failed, in every row."""
  failed = [r for r in all_rows if r.summary is None]
  erroneous = [r for r in all_rows if r.summary and r.summary.get("errors")]
  unchecked = [
      r
      for r in all_rows
      if r.summary and not (r.summary.get("config") or {}).get("check")
  ]
  if failed or erroneous or unchecked:
    parts = []
    for label, group in (
        ("did not run", failed),
        ("had errors", erroneous),
        ("were not checked", unchecked),
    ):
      if group:
        parts.append(
            f"{len(group)} rows {label} ("
            + ", ".join(
                f"{r.config.name}/{r.client}/{r.concurrency}" for r in group[:6]
            )
            + ")"
        )
    judge.add(
        False, "every answer checked, no request failed", "; ".join(parts)
    )
    return
  judge.add(
      True,
      "every answer checked, no request failed",
      f"{len(all_rows)} rows, "
      f"{sum(r.summary['ok'] for r in all_rows)} answers checked",
  )
