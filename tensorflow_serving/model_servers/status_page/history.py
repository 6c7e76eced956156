"""Traffic of the last few minutes, sampled from the Prometheus metrics.

Requests are already counted in prometheus_client by the request path
(util/metrics.py, batching/prometheus_metrics.py); nothing here runs on that
path. A daemon thread reads the same metric objects every `period_s` and
keeps what changed between two readings (rates, latency percentiles, batch
sizes) in a bounded ring buffer. Sampling in the background rather than when
a page polls means the last minutes are there when someone first looks, at
the cost of one read of three metric families per period, whatever the
request rate.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
import dataclasses
import math
import threading
import time
from typing import Any

from absl import logging

from tensorflow_serving.util import metrics

# A reading every 2 s for 5 minutes: 150 points per series.
DEFAULT_PERIOD_S = 2.0
DEFAULT_WINDOW_S = 300.0

_OK = "OK"
_LATENCY_INDEX = {b: i for i, b in enumerate(metrics.LATENCY_BUCKETS_US)}
_BATCH_INDEX = {b: i for i, b in enumerate(metrics.BATCH_SIZE_BUCKETS)}


@dataclasses.dataclass
class _Histogram:
  """Cumulative bucket counts (upstream's bounds) plus the sum of values."""

  buckets: list[float]
  total: float = 0.0

  @classmethod
  def empty(cls, size: int) -> _Histogram:
    return cls([0.0] * size)


@dataclasses.dataclass
class Reading:
  """Cumulative counter values at one instant, per model and batch pool."""

  monotonic_s: float
  wall_s: float
  # model -> status code name -> requests.
  requests: dict[str, dict[str, float]]
  # model -> successful requests' latency (us), over every API and entrypoint.
  latency: dict[str, _Histogram]
  # batch thread pool -> input batch sizes.
  batch_sizes: dict[str, _Histogram]


# The server-wide series: every model name requests carried, configured or
# not (a mistyped name shows up here as NOT_FOUND errors).
ALL_MODELS = ""


def read(names: Iterable[str], now_s: float, wall_s: float) -> Reading:
  """Reads the process's metrics; keeps `names` and their sum (ALL_MODELS)."""
  wanted = set(names)
  wanted.discard(ALL_MODELS)
  m = metrics.get()
  requests: dict[str, dict[str, float]] = {ALL_MODELS: {}}
  for family in m.request_count.collect():
    for sample in family.samples:
      if not sample.name.endswith("_total"):
        continue
      name = sample.labels["model_name"]
      code = sample.labels["status"]
      for key in (ALL_MODELS, name) if name in wanted else (ALL_MODELS,):
        by_code = requests.setdefault(key, {})
        by_code[code] = by_code.get(code, 0.0) + sample.value
  size = len(metrics.LATENCY_BUCKETS_US)
  latency = {ALL_MODELS: _Histogram.empty(size)}
  for family in m.request_latency.collect():
    for sample in family.samples:
      name = sample.labels["model_name"]
      keys = (ALL_MODELS, name) if name in wanted else (ALL_MODELS,)
      _add_histogram_sample(latency, keys, sample, _LATENCY_INDEX, size)
  batch_sizes: dict[str, _Histogram] = {}
  size = len(metrics.BATCH_SIZE_BUCKETS)
  for family in m.batching_input_batch_size.collect():
    for sample in family.samples:
      keys = (sample.labels["thread_pool_name"],)
      _add_histogram_sample(batch_sizes, keys, sample, _BATCH_INDEX, size)
  return Reading(now_s, wall_s, requests, latency, batch_sizes)


def _add_histogram_sample(
    into: dict[str, _Histogram],
    keys: tuple[str, ...],
    sample: Any,
    index: dict[float, int],
    size: int,
) -> None:
  if sample.name.endswith("_bucket"):
    i = index.get(float(sample.labels["le"]))
    if i is None:
      return
    for key in keys:
      into.setdefault(key, _Histogram.empty(size)).buckets[i] += sample.value
  elif sample.name.endswith("_sum"):
    for key in keys:
      into.setdefault(key, _Histogram.empty(size)).total += sample.value


def quantile(q: float, bounds: tuple[float, ...], cumulative: list[float]):
  """Prometheus's histogram_quantile over one interval's bucket counts.

  Linear within the bucket holding the rank; the +Inf bucket answers its
  lower bound. None when the interval had no observations.
  """
  total = cumulative[-1] if cumulative else 0.0
  if total <= 0:
    return None
  rank = q * total
  for i, count in enumerate(cumulative):
    if count >= rank:
      upper = bounds[i]
      lower = bounds[i - 1] if i > 0 else 0.0
      below = cumulative[i - 1] if i > 0 else 0.0
      if math.isinf(upper):
        return lower
      if count <= below:
        return upper
      return lower + (upper - lower) * (rank - below) / (count - below)
  return bounds[-2]


def _delta(new: float, old: float) -> float:
  # A counter that went down was reset (a new registry): count from zero,
  # as Prometheus's rate() does.
  return new - old if new >= old else new


@dataclasses.dataclass(frozen=True)
class ModelPoint:
  requests_per_s: float
  # Milliseconds, of the interval's successful requests; None without any.
  p50_ms: float | None
  p99_ms: float | None
  # Status code name -> failed requests per second (codes other than OK).
  errors_per_s: dict[str, float]


@dataclasses.dataclass(frozen=True)
class PoolPoint:
  batches_per_s: float
  mean_batch_size: float | None
  # Index into BATCH_SIZE_BUCKETS -> batches of that size in the interval.
  batch_size_counts: dict[int, float]


@dataclasses.dataclass(frozen=True)
class Point:
  """What changed between two readings, stamped with the later one's time."""

  wall_s: float
  models: dict[str, ModelPoint]
  pools: dict[str, PoolPoint]


def interval(old: Reading, new: Reading) -> Point:
  """The rates and percentiles of the requests between two readings."""
  dt = new.monotonic_s - old.monotonic_s
  if dt <= 0:
    raise ValueError("readings out of order")
  models = {}
  for name, by_code in new.requests.items():
    before = old.requests.get(name, {})
    deltas = {c: _delta(v, before.get(c, 0.0)) for c, v in by_code.items()}
    hist = new.latency.get(name)
    p50 = p99 = None
    if hist is not None:
      prev = old.latency.get(name)
      cumulative = [
          _delta(v, prev.buckets[i] if prev else 0.0)
          for i, v in enumerate(hist.buckets)
      ]
      bounds = metrics.LATENCY_BUCKETS_US
      p50 = quantile(0.5, bounds, cumulative)
      p99 = quantile(0.99, bounds, cumulative)
    models[name] = ModelPoint(
        requests_per_s=sum(deltas.values()) / dt,
        p50_ms=None if p50 is None else p50 / 1000.0,
        p99_ms=None if p99 is None else p99 / 1000.0,
        errors_per_s={c: d / dt for c, d in deltas.items() if c != _OK and d},
    )
  pools = {}
  for name, hist in new.batch_sizes.items():
    prev = old.batch_sizes.get(name)
    cumulative = [
        _delta(v, prev.buckets[i] if prev else 0.0)
        for i, v in enumerate(hist.buckets)
    ]
    batches = cumulative[-1]
    counts = {}
    below = 0.0
    for i, c in enumerate(cumulative):
      if c > below:
        counts[i] = c - below
      below = max(below, c)
    size_sum = _delta(hist.total, prev.total if prev else 0.0)
    pools[name] = PoolPoint(
        batches_per_s=batches / dt,
        mean_batch_size=size_sum / batches if batches > 0 else None,
        batch_size_counts=counts,
    )
  return Point(new.wall_s, models, pools)


class Sampler:
  """Reads the metrics every `period_s`; keeps `window_s` worth of points.

  `names` is called at every reading for the models to keep series of (the
  live config's), None once there is no server any more; memory is bounded by their number times the window, not by
  whatever model names clients send.
  """

  def __init__(
      self,
      names: Callable[[], Iterable[str] | None],
      period_s: float = DEFAULT_PERIOD_S,
      window_s: float = DEFAULT_WINDOW_S,
  ):
    self.period_s = period_s
    self.window_s = window_s
    self._names = names
    self._lock = threading.Lock()
    self._points: collections.deque[Point] = collections.deque(
        maxlen=max(1, round(window_s / period_s))
    )
    self._last: Reading | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def start(self) -> None:
    if self._thread is None:
      self._thread = threading.Thread(
          target=self._run, name="status-page-sampler", daemon=True
      )
      self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def _run(self) -> None:
    while not self._stop.is_set():
      try:
        self.sample()
      except Exception:  # pylint: disable=broad-except
        # Never let a bad reading end the history; try again next period.
        logging.exception("Status page: reading the metrics failed")
      self._stop.wait(self.period_s)

  def sample(
      self, now_s: float | None = None, wall_s: float | None = None
  ) -> None:
    """Takes one reading (the thread's tick; tests call it directly).

    `names` returning None means the server is gone: sampling stops.
    """
    names = self._names()
    if names is None:
      self._stop.set()
      return
    reading = read(
        names,
        time.monotonic() if now_s is None else now_s,
        time.time() if wall_s is None else wall_s,
    )
    with self._lock:
      last, self._last = self._last, reading
      if last is not None and reading.monotonic_s > last.monotonic_s:
        self._points.append(interval(last, reading))

  def points(self) -> list[Point]:
    with self._lock:
      return list(self._points)
