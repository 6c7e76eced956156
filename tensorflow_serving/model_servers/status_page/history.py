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
import itertools
import math
import operator
import threading
import time
from typing import Any

from absl import logging

from tensorflow_serving.util import metrics

# A reading every 2 s for 5 minutes: 150 points per series.
DEFAULT_PERIOD_S = 2.0
DEFAULT_WINDOW_S = 300.0

_OK = "OK"


@dataclasses.dataclass(frozen=True)
class _Histogram:
  """Cumulative bucket counts (upstream's bounds) plus the sum of values.

  Shared between readings when nothing moved: never modified.
  """

  buckets: list[float]
  total: float = 0.0


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


def read(
    names: Iterable[str],
    now_s: float,
    wall_s: float,
    cache: HistogramCache | None = None,
) -> Reading:
  """Reads the metrics; keeps `names` and their sum (ALL_MODELS).

  With several worker processes (model_servers/workers) the reading is of
  every worker's values, through the same merged collector the Prometheus
  scrape uses; otherwise of this process's metric objects directly.
  """
  source = metrics.exposition_source()
  if source is not None:
    return read_collected(source.collect(), names, now_s, wall_s)
  wanted = set(names)
  wanted.discard(ALL_MODELS)
  m = metrics.get()
  cache = cache or HistogramCache()
  by_model: dict[str, list[Any]] = {}
  for labels, child in _children(m.request_latency):
    name = labels[0]  # model_name, API, entrypoint
    by_model.setdefault(ALL_MODELS, []).append(child)
    if name in wanted:
      by_model.setdefault(name, []).append(child)
  by_pool: dict[str, list[Any]] = {}
  for labels, child in _children(m.batching_input_batch_size):
    by_pool.setdefault(labels[0], []).append(child)  # thread_pool_name
  latency = cache.sums("latency", by_model)
  batch_sizes = cache.sums("batch_size", by_pool)
  cache.end_reading()
  return Reading(
      now_s, wall_s, read_request_counts(wanted), latency, batch_sizes
  )


_REQUEST_COUNT = metrics.prometheus_name("/tensorflow/serving/request_count")
_REQUEST_LATENCY = metrics.prometheus_name(
    "/tensorflow/serving/request_latency"
)
_BATCH_SIZE = metrics.prometheus_name(
    "/tensorflow/serving/batching_session/input_batch_size"
)


def read_collected(
    families: Iterable[Any], names: Iterable[str], now_s: float, wall_s: float
) -> Reading:
  """A Reading from collected metric families (every worker's values).

  Slower than reading this process's objects (it goes through
  prometheus_client's samples), which is why only multi-worker servers use
  it; it still runs off the request path, once per period.
  """
  wanted = set(names)
  wanted.discard(ALL_MODELS)
  requests: dict[str, dict[str, float]] = {ALL_MODELS: {}}
  latency: dict[str, dict[tuple[str, ...], dict[float, float]]] = {}
  latency_sums: dict[str, float] = {}
  pools: dict[str, dict[float, float]] = {}
  pool_sums: dict[str, float] = {}
  for family in families:
    if family.name == _REQUEST_COUNT:
      for sample in family.samples:
        if not sample.name.endswith("_total"):
          continue
        name, code = sample.labels["model_name"], sample.labels["status"]
        for key in (ALL_MODELS, name) if name in wanted else (ALL_MODELS,):
          by_code = requests.setdefault(key, {})
          by_code[code] = by_code.get(code, 0.0) + sample.value
    elif family.name == _REQUEST_LATENCY:
      for sample in family.samples:
        name = sample.labels["model_name"]
        keys = (ALL_MODELS, name) if name in wanted else (ALL_MODELS,)
        if sample.name.endswith("_bucket"):
          bound = float(sample.labels["le"])
          series = tuple(
              v for k, v in sorted(sample.labels.items()) if k != "le"
          )
          for key in keys:
            buckets = latency.setdefault(key, {}).setdefault(series, {})
            buckets[bound] = sample.value
        elif sample.name.endswith("_sum"):
          for key in keys:
            latency_sums[key] = latency_sums.get(key, 0.0) + sample.value
    elif family.name == _BATCH_SIZE:
      for sample in family.samples:
        pool = sample.labels["thread_pool_name"]
        if sample.name.endswith("_bucket"):
          bound = float(sample.labels["le"])
          by_bound = pools.setdefault(pool, {})
          by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
        elif sample.name.endswith("_sum"):
          pool_sums[pool] = pool_sums.get(pool, 0.0) + sample.value
  merged_latency = {}
  for key, by_series in latency.items():
    summed: dict[float, float] = {}
    for buckets in by_series.values():
      for bound, value in buckets.items():
        summed[bound] = summed.get(bound, 0.0) + value
    merged_latency[key] = _Histogram(
        [summed[b] for b in sorted(summed)], latency_sums.get(key, 0.0)
    )
  batch_sizes = {
      pool: _Histogram([by[b] for b in sorted(by)], pool_sums.get(pool, 0.0))
      for pool, by in pools.items()
  }
  return Reading(now_s, wall_s, requests, merged_latency, batch_sizes)


def read_request_counts(names: Iterable[str]) -> dict[str, dict[str, float]]:
  """Model (and ALL_MODELS) -> status code name -> requests so far."""
  source = metrics.exposition_source()
  if source is not None:
    return read_collected(source.collect(), names, 0.0, 0.0).requests
  wanted = set(names)
  wanted.discard(ALL_MODELS)
  requests: dict[str, dict[str, float]] = {ALL_MODELS: {}}
  for (name, code), child in _children(metrics.get().request_count):
    value = _VALUE(child._value)  # pylint: disable=protected-access
    for key in (ALL_MODELS, name) if name in wanted else (ALL_MODELS,):
      by_code = requests.setdefault(key, {})
      by_code[code] = by_code.get(code, 0.0) + value
  return requests


# prometheus_client's own collect() builds a Sample and a label dict per
# bucket: 25 ms per reading of 20 models' latency on this machine. Reading
# the children's values directly, and only those that moved, costs a small
# fraction of that (tools/benchmark/status_page_overhead_benchmark prints
# it). A value's float is read without its lock, which only serializes
# writers' read-modify-write (one attribute read is atomic under the GIL):
# 3.6 us for a histogram's 34 buckets, against 27 us through get(). These
# are internals of the pinned prometheus_client (requirements.txt);
# history_test checks the values read through them against what
# prometheus_client exports.
_VALUE = operator.attrgetter("_value")


def _children(metric) -> list[tuple[tuple[str, ...], Any]]:
  """(label values, child) of a labelled metric, in labelnames order."""
  with metric._lock:  # pylint: disable=protected-access
    return list(metric._metrics.items())  # pylint: disable=protected-access


class HistogramCache:
  """What the last reading saw of each histogram child, and their sums.

  A child's buckets are read while its sum changes and once more after it
  stops (observe() adds to the sum just before its bucket), then not until
  the sum changes again; a sum over children none of which moved is reused.
  An idle series so costs one read per reading, not 34.
  """

  def __init__(self):
    # child -> (sum, cumulative buckets, settled, changed in this reading).
    self._children: dict[Any, tuple[float, list[float], bool, bool]] = {}
    self._next_children: dict[Any, tuple[float, list[float], bool, bool]] = {}
    # (kind, key) -> (children, their summed histogram).
    self._sums: dict[tuple[str, str], tuple[tuple[Any, ...], _Histogram]] = {}
    self._next_sums: dict[
        tuple[str, str], tuple[tuple[Any, ...], _Histogram]
    ] = {}

  def _read(self, child) -> tuple[float, list[float], bool, bool]:
    found = self._next_children.get(child)
    if found is not None:
      return found
    total = child._sum._value  # pylint: disable=protected-access
    entry = self._children.get(child)
    if entry is not None and entry[0] == total and entry[2]:
      found = (total, entry[1], True, False)
    else:
      buckets = list(
          itertools.accumulate(
              map(_VALUE, child._buckets)  # pylint: disable=protected-access
          )
      )
      settled = entry is not None and entry[0] == total
      changed = entry is None or entry[0] != total or entry[1] != buckets
      found = (total, buckets, settled, changed)
    self._next_children[child] = found
    return found

  def sums(
      self, kind: str, groups: dict[str, list[Any]]
  ) -> dict[str, _Histogram]:
    """Each group's children summed bucket by bucket."""
    out = {}
    for key, children in groups.items():
      members = tuple(children)
      states = [self._read(child) for child in members]
      previous = self._sums.get((kind, key))
      if (
          previous is not None
          and previous[0] == members
          and not any(state[3] for state in states)
      ):
        summed = previous[1]
      else:
        summed = _Histogram(
            [sum(column) for column in zip(*(state[1] for state in states))],
            sum(state[0] for state in states),
        )
      self._next_sums[(kind, key)] = (members, summed)
      out[key] = summed
    return out

  def end_reading(self) -> None:
    """Keeps what this reading saw; children gone from the registry drop."""
    self._children, self._next_children = self._next_children, {}
    self._sums, self._next_sums = self._next_sums, {}


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
    self._cache = HistogramCache()
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
        self._cache,
    )
    with self._lock:
      last, self._last = self._last, reading
      if last is not None and reading.monotonic_s > last.monotonic_s:
        self._points.append(interval(last, reading))

  def points(self) -> list[Point]:
    with self._lock:
      return list(self._points)
