"""The load generator's numbers: percentiles, per-worker results, summaries.

Every client, Python or C, ends in the same summary dict (see summarize()),
so the comparison reads one shape whatever produced it.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
import dataclasses
import itertools
import math
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
  """Nearest-rank percentile: the smallest value with q% of them at or below.

  Always an observed value, so p100 is the maximum and a single sample is
  every percentile. `sorted_values` must be ascending and non-empty.
  """
  if not sorted_values:
    raise ValueError("percentile of no values")
  if not 0 <= q <= 100:
    raise ValueError(f"percentile {q} is not in [0, 100]")
  rank = max(1, math.ceil(q / 100 * len(sorted_values)))
  return sorted_values[rank - 1]


def latency_ms(sorted_s: Sequence[float]) -> dict[str, float] | None:
  """mean/min/p50/p90/p99/max in ms of ascending latencies in seconds."""
  if not sorted_s:
    return None
  return {
      "mean": 1e3 * sum(sorted_s) / len(sorted_s),
      "min": 1e3 * sorted_s[0],
      "p50": 1e3 * percentile(sorted_s, 50),
      "p90": 1e3 * percentile(sorted_s, 90),
      "p99": 1e3 * percentile(sorted_s, 99),
      "max": 1e3 * sorted_s[-1],
  }


@dataclasses.dataclass
class WorkerResult:
  """What one worker saw inside its measurement window."""

  latencies_s: list[float]
  errors: dict[str, int]
  elapsed_s: float
  cpu_s: float
  server_cpu_s: float | None = None
  # The server's busiest threads: (name, CPU seconds), busiest first.
  server_threads: list[tuple[str, float]] | None = None
  # Host-wide CPU split over the window (see probes.host_cpu_split).
  host: dict[str, float] | None = None

  @property
  def ok(self) -> int:
    return len(self.latencies_s)


def summarize(
    *,
    ok: int,
    errors: dict[str, int],
    elapsed_s: float,
    throughput_rps: float,
    latency: dict[str, float] | None,
    loadgen_cpu_s: float,
    server_cpu_s: float | None,
    server_threads: Sequence[tuple[str, float]] | None,
    host: dict[str, float] | None,
) -> dict[str, Any]:
  """The summary every client's run ends in (one JSON-able dict).

  Server CPU per request is all the server's CPU in the window over every
  request answered in it: what one request costs the server, whatever its
  threads did for it.
  """
  failed = sum(errors.values())
  requests = ok + failed

  def pct(cpu: float | None) -> float | None:
    return 100 * cpu / elapsed_s if cpu is not None and elapsed_s else None

  def per_request(cpu: float | None) -> float | None:
    return 1e6 * cpu / requests if cpu is not None and requests else None

  return {
      "requests": requests,
      "ok": ok,
      "errors": failed,
      "errors_by_status": dict(sorted(errors.items())),
      "elapsed_s": elapsed_s,
      "throughput_rps": throughput_rps,
      "latency_ms": latency,
      "loadgen_cpu_s": loadgen_cpu_s,
      "loadgen_cpu_pct": pct(loadgen_cpu_s),
      "loadgen_cpu_us_per_request": per_request(loadgen_cpu_s),
      "server_cpu_pct": pct(server_cpu_s),
      "server_cpu_us_per_request": per_request(server_cpu_s),
      "server_threads": (
          [
              {"name": name, "cpu_pct": 100 * cpu / elapsed_s}
              for name, cpu in server_threads
          ]
          if server_threads and elapsed_s
          else None
      ),
      "host_cpu": host,
  }


def aggregate(results: Sequence[WorkerResult]) -> dict[str, Any]:
  """Merges concurrent workers' windows into one summary.

  The windows overlap (workers start together), so the throughputs add up;
  latency percentiles are over the union of all successful requests. Only
  worker 0 samples the server and the host.
  """
  latencies = sorted(
      itertools.chain.from_iterable(r.latencies_s for r in results)
  )
  errors: collections.Counter[str] = collections.Counter()
  for r in results:
    errors.update(r.errors)
  elapsed = max((r.elapsed_s for r in results), default=0.0)
  sampler = next(
      (r for r in results if r.server_cpu_s is not None or r.host), None
  )
  return summarize(
      ok=len(latencies),
      errors=dict(errors),
      elapsed_s=elapsed,
      throughput_rps=sum(
          r.ok / r.elapsed_s for r in results if r.elapsed_s > 0
      ),
      latency=latency_ms(latencies),
      loadgen_cpu_s=sum(r.cpu_s for r in results),
      server_cpu_s=sampler.server_cpu_s if sampler else None,
      server_threads=sampler.server_threads if sampler else None,
      host=sampler.host if sampler else None,
  )
