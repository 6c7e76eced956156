"""Server metrics under upstream's names, recorded with prometheus_client.

Upstream exports `/tensorflow/serving/request_count` and friends, which its
Prometheus exporter renames to `:tensorflow:serving:request_count` (every
character outside [a-zA-Z0-9_] becomes ':'). Dashboards and alerts query those
exact names, so we keep them. prometheus_client always renders a counter as
`<name>_total`, so `exposition()` renders counters under their upstream name
and restores their `# TYPE <name> counter` line.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import prometheus_client
from prometheus_client import exposition as prometheus_exposition
from prometheus_client import metrics_core

# Upstream exports no `_created` series.
prometheus_client.disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PATH = "/monitoring/prometheus/metrics"


def _exponential_buckets(scale: float, growth: float, count: int):
  """TensorFlow's Buckets::Exponential bounds, computed as it computes them.

  (Each bound is the previous one times `growth`, so values fall into the
  same buckets as upstream's; `exposition` prints the bounds as upstream's
  exporter does.)
  """
  bounds = []
  bound = scale
  for _ in range(count):
    bounds.append(bound)
    bound *= growth
  return (*bounds, float("inf"))


# Upstream's latency buckets: exponential from 10 us by x1.8, 33 buckets.
LATENCY_BUCKETS_US = _exponential_buckets(10.0, 1.8, 33)
# Batch and example counts: powers of two up to 2^14, as upstream's.
BATCH_SIZE_BUCKETS = _exponential_buckets(1.0, 2.0, 15)


def prometheus_name(tf_name: str) -> str:
  """`/tensorflow/serving/request_count` -> `:tensorflow:serving:request_count`."""
  return re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)


class _Registry:
  """The process-wide metrics; created lazily so tests can reset it."""

  def __init__(self):
    self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
    # Metric attribute name -> its cached children (see _Children).
    self.children: dict[str, _Children] = {}
    r = self.registry

    # prometheus_client drops a counter name's `_total` suffix from its
    # family name; these are upstream names that really end in it.
    self.total_suffixed: set[str] = set()

    def counter(name, doc, labels):
      full = prometheus_name(name)
      if full.endswith("_total"):
        self.total_suffixed.add(full[: -len("_total")])
      return prometheus_client.Counter(full, doc, labels, registry=r)

    def histogram(name, doc, labels, buckets=LATENCY_BUCKETS_US):
      return prometheus_client.Histogram(
          prometheus_name(name), doc, labels, registry=r, buckets=buckets
      )

    self.request_count = counter(
        "/tensorflow/serving/request_count",
        "The total number of requests.",
        ["model_name", "status"],
    )
    self.request_latency = histogram(
        "/tensorflow/serving/request_latency",
        "Distribution of wall time (in microseconds) for successful requests.",
        ["model_name", "API", "entrypoint"],
    )
    self.runtime_latency = histogram(
        "/tensorflow/serving/runtime_latency",
        "Distribution of wall time (in microseconds) for Tensorflow runtime.",
        ["model_name", "API", "runtime"],
    )
    self.request_example_counts = histogram(
        "/tensorflow/serving/request_example_counts",
        "The number of tensorflow.Examples per request.",
        ["model"],
        BATCH_SIZE_BUCKETS,
    )
    self.request_example_count_total = counter(
        "/tensorflow/serving/request_example_count_total",
        "The total number of tensorflow.Examples.",
        ["model"],
    )
    self.load_attempt_count = counter(
        "/tensorflow/cc/saved_model/load_attempt_count",
        "The number of times a SavedModel was loaded.",
        ["model_path", "status"],
    )
    self.load_latency = histogram(
        "/tensorflow/cc/saved_model/load_latency",
        "Latency in microseconds for SavedModels that were successfully "
        "loaded.",
        ["model_path"],
    )
    self.model_warmup_latency = histogram(
        "/tensorflow/serving/model_warmup_latency",
        "Distribution of wall time (in microseconds) for warming up the "
        "model.",
        ["model_path", "status"],
    )
    self.batching_queuing_latency = histogram(
        "/tensorflow/serving/batching_session/queuing_latency",
        "Distribution of wall time (in microseconds) tasks spend queued.",
        ["thread_pool_name"],
    )
    self.batching_input_batch_size = histogram(
        "/tensorflow/serving/batching_session/input_batch_size",
        "Batch sizes before padding.",
        ["thread_pool_name"],
        BATCH_SIZE_BUCKETS,
    )
    self.batching_processed_batch_size = histogram(
        "/tensorflow/serving/batching_session/processed_batch_size",
        "Batch sizes after padding.",
        ["thread_pool_name"],
        BATCH_SIZE_BUCKETS,
    )
    self.batching_padding_size = histogram(
        "/tensorflow/serving/batching_session/padding_size",
        "Rows of padding added per batch.",
        ["thread_pool_name"],
        BATCH_SIZE_BUCKETS,
    )
    self.batching_wrapped_run_count = counter(
        "/tensorflow/serving/batching_session/wrapped_run_count",
        "Runs of the wrapped session.",
        ["thread_pool_name"],
    )
    self.request_log_count = counter(
        "/tensorflow/serving/request_log_count",
        "The total number of requests logged from the model server sliced "
        "down by model_name and status code.",
        ["model_name", "status_code"],
    )
    # Beyond upstream, as new series (upstream's keep their labels, so
    # dashboards written for upstream keep working).
    self.version_request_count = counter(
        "/tensorflow/serving/version_request_count",
        "Beyond upstream: requests per model version and signature "
        "(version and signature empty when the request failed before them).",
        ["model_name", "version", "signature", "API", "entrypoint", "status"],
    )
    self.version_request_latency = histogram(
        "/tensorflow/serving/version_request_latency",
        "Beyond upstream: wall time (in microseconds) of successful requests "
        "per model version and signature.",
        ["model_name", "version", "signature", "API", "entrypoint"],
    )
    self.batching_queue_depth = prometheus_client.Gauge(
        prometheus_name("/tensorflow/serving/batching_session/queue_depth"),
        "Beyond upstream: tasks waiting in the batch queues.",
        ["thread_pool_name"],
        registry=r,
        multiprocess_mode="livesum",
    )
    self.model_load_latency = histogram(
        "/tensorflow/serving/model_load_latency",
        "Beyond upstream: wall time (in microseconds) from a version's first "
        "load attempt to AVAILABLE, warmup and retries included.",
        ["model_name"],
    )
    self.model_load_failure_count = counter(
        "/tensorflow/serving/model_load_failure_count",
        "Beyond upstream: failed load attempts (retried or final).",
        ["model_name", "status"],
    )
    self.build_info = prometheus_client.Gauge(
        prometheus_name("/tensorflow/serving/build_info"),
        "Beyond upstream: 1, labelled with this server's version, build "
        "configuration and TensorFlow version.",
        ["version", "build_device", "compilation_mode", "tensorflow_version"],
        registry=r,
        multiprocess_mode="livemax",
    )
    self.loaded_versions = prometheus_client.Gauge(
        prometheus_name("/tensorflow/serving/loaded_versions"),
        "Beyond upstream: versions currently AVAILABLE, per model.",
        ["model_name"],
        registry=r,
        # Under --num_workers (prometheus_client's multiprocess mode): the
        # most any live worker has AVAILABLE. Unused in a single process.
        multiprocess_mode="livemax",
    )


_lock = threading.Lock()
_instance: _Registry | None = None
# What exposition() renders instead of this process's registry, if set: a
# collector with the same families holding every worker process's values
# (model_servers/workers).
_exposition_source: Any = None


def set_exposition_source(collector: Any) -> None:
  """Renders `collector` (None: the registry) under upstream's names."""
  global _exposition_source
  _exposition_source = collector


def exposition_source() -> Any:
  """The collector set by set_exposition_source, or None (this process)."""
  return _exposition_source


def get() -> _Registry:
  global _instance
  if _instance is None:
    with _lock:
      if _instance is None:
        _instance = _Registry()
  return _instance


def reset_for_test() -> None:
  global _instance
  with _lock:
    _instance = None


def elapsed_us(start: float) -> float:
  return (time.perf_counter() - start) * 1e6


# Distinct label sets one metric may hold. Model names come from requests,
# so a client sending random ones would otherwise grow every per-model series
# without bound; past the cap, new names share MODEL_NAME_OVERFLOW.
MAX_SERIES_PER_METRIC = 4096
MODEL_NAME_OVERFLOW = "__other__"


class _Children:
  """Label-set -> metric child, cached (labels() costs ~1.5 us and a lock).

  Threads may race to fill the same key; both get equal children from
  prometheus_client, so no lock is needed here.
  """

  __slots__ = ("_cache", "_metric")

  def __init__(self, metric):
    self._metric = metric
    self._cache: dict[tuple[str, ...], object] = {}

  def get(self, *labels: str):
    child = self._cache.get(labels)
    if child is None:
      if len(self._cache) >= MAX_SERIES_PER_METRIC:
        labels = (MODEL_NAME_OVERFLOW, *labels[1:])
        child = self._cache.get(labels)
        if child is not None:
          return child
      child = self._cache[labels] = self._metric.labels(*labels)
    return child


def _child_cache(registry: _Registry, name: str) -> _Children:
  cache = registry.children.get(name)
  if cache is None:
    cache = registry.children.setdefault(
        name, _Children(getattr(registry, name))
    )
  return cache


def record_request(
    model_name: str,
    api: str,
    entrypoint: str,
    code_name: str,
    start: float,
    version: str = "",
    signature: str = "",
) -> None:
  """Counts one request; its latency is recorded on success only, as upstream.

  `api` is upstream's label (`Predict`, `Classify`, `Regress`), `entrypoint`
  `GRPC` or `REST`. The per-version series also get the version served and
  the signature resolved (empty if the request failed before either).
  """
  m = get()
  _child_cache(m, "request_count").get(model_name, code_name).inc()
  _child_cache(m, "version_request_count").get(
      model_name, version, signature, api, entrypoint, code_name
  ).inc()
  if code_name == "OK":
    micros = elapsed_us(start)
    _child_cache(m, "request_latency").get(model_name, api, entrypoint).observe(
        micros
    )
    _child_cache(m, "version_request_latency").get(
        model_name, version, signature, api, entrypoint
    ).observe(micros)


def record_runtime_latency(
    model_name: str, api: str, runtime: str, micros: float
) -> None:
  """Time the model itself took (`runtime`: `TF1` or `TFLite`)."""
  _child_cache(get(), "runtime_latency").get(model_name, api, runtime).observe(
      micros
  )


def record_example_count(model_name: str, count: int) -> None:
  """tf.Examples in one Classify, Regress or MultiInference request."""
  m = get()
  _child_cache(m, "request_example_counts").get(model_name).observe(count)
  _child_cache(m, "request_example_count_total").get(model_name).inc(count)


def record_request_log(model_name: str, code_name: str) -> None:
  """One sampled request: written (OK), failed, or dropped (queue full)."""
  _child_cache(get(), "request_log_count").get(model_name, code_name).inc()


def record_model_load(model_name: str, micros: float) -> None:
  """A version became AVAILABLE `micros` after its first load attempt."""
  _child_cache(get(), "model_load_latency").get(model_name).observe(micros)


def record_model_load_failure(model_name: str, code_name: str) -> None:
  """One failed load attempt (retried or not)."""
  _child_cache(get(), "model_load_failure_count").get(
      model_name, code_name
  ).inc()


def batching_queue_depth(thread_pool_name: str) -> Any:
  """The gauge child counting the pool's queued tasks (inc/dec)."""
  return get().batching_queue_depth.labels(thread_pool_name)


def set_build_info(
    version: str,
    build_device: str,
    compilation_mode: str,
    tensorflow_version: str,
) -> None:
  get().build_info.labels(
      version, build_device, compilation_mode, tensorflow_version
  ).set(1)


def set_loaded_versions(model_name: str, count: int) -> None:
  """Beyond upstream: how many versions of a model are AVAILABLE now."""
  get().loaded_versions.labels(model_name).set(count)


class _UpstreamNames:
  """Collector view of the registry with counters under upstream's names."""

  def __init__(
      self,
      registry: prometheus_client.CollectorRegistry,
      total_suffixed: set[str],
  ):
    self._registry = registry
    self._total_suffixed = total_suffixed
    self.counter_names: list[str] = []

  def collect(self):
    for metric in self._registry.collect():
      if metric.type != "counter":
        yield metric
        continue
      # Rendered as untyped here (prometheus_client would rename a counter to
      # `<name>_total`); exposition() restores the TYPE line.
      name = metric.name
      if name in self._total_suffixed:
        name += "_total"
      self.counter_names.append(name)
      family = metrics_core.Metric(name, metric.documentation, "unknown")
      for sample in metric.samples:
        if sample.name.endswith("_total"):
          family.add_sample(name, sample.labels, sample.value)
      yield family


_BUCKET_BOUND = re.compile(rb'le="([^"]+)"')


def _upstream_bound(match: re.Match) -> bytes:
  """A bucket bound as absl::StrCat prints a double (six significant digits).

  prometheus_client prints repr(): `32.400000000000006` for the bound
  upstream's exporter shows as `32.4`.
  """
  text = match.group(1)
  if text == b"+Inf":
    return match.group(0)
  return b'le="%s"' % (b"%.6g" % float(text))


def exposition() -> bytes:
  """Prometheus text format of every metric, as upstream's exporter prints.

  Counters are typed `counter` under their upstream names, and histogram
  bounds are printed with six significant digits.
  """
  registry = get()
  view = _UpstreamNames(
      _exposition_source or registry.registry, registry.total_suffixed
  )
  text = prometheus_exposition.generate_latest(view)
  for name in view.counter_names:
    text = text.replace(
        f"# TYPE {name} untyped\n".encode(),
        f"# TYPE {name} counter\n".encode(),
        1,
    )
  return _BUCKET_BOUND.sub(_upstream_bound, text)
