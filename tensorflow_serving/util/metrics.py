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

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import disable_created_metrics
from prometheus_client import exposition as prometheus_exposition
from prometheus_client import metrics_core

# Upstream exports no `_created` series.
disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PATH = "/monitoring/prometheus/metrics"

# Upstream's latency buckets: exponential from 10 us by x1.8, 33 buckets.
LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33)) + (float("inf"),)
# Batch sizes: powers of two up to 2^14, as upstream's batching histograms.
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(15)) + (float("inf"),)


def prometheus_name(tf_name: str) -> str:
  """`/tensorflow/serving/request_count` -> `:tensorflow:serving:request_count`."""
  return re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)


class _Registry:
  """The process-wide metrics; created lazily so tests can reset it."""

  def __init__(self):
    self.registry = CollectorRegistry(auto_describe=True)
    r = self.registry

    def counter(name, doc, labels):
      return Counter(prometheus_name(name), doc, labels, registry=r)

    def histogram(name, doc, labels, buckets=LATENCY_BUCKETS_US):
      return Histogram(
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
        "Distribution of wall time (in microseconds) spent running the model.",
        ["model_name", "API", "runtime"],
    )
    self.request_example_count_total = counter(
        "/tensorflow/serving/request_example_count_total",
        "The total number of tensorflow.Examples.",
        ["model_name"],
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
    self.loaded_versions = Gauge(
        prometheus_name("/tensorflow/serving/loaded_versions"),
        "Beyond upstream: versions currently AVAILABLE, per model.",
        ["model_name"],
        registry=r,
    )


_lock = threading.Lock()
_instance: _Registry | None = None


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


def record_request(
    model_name: str, api: str, entrypoint: str, code_name: str, start: float
) -> None:
  """Counts one request; its latency is recorded on success only, as upstream."""
  m = get()
  m.request_count.labels(model_name, code_name).inc()
  if code_name == "OK":
    m.request_latency.labels(model_name, api, entrypoint).observe(
        elapsed_us(start)
    )


class _UpstreamNames:
  """Collector view of the registry with counters under upstream's names."""

  def __init__(self, registry: CollectorRegistry):
    self._registry = registry
    self.counter_names: list[str] = []

  def collect(self):
    for metric in self._registry.collect():
      if metric.type != "counter":
        yield metric
        continue
      # Rendered as untyped here (prometheus_client would rename a counter to
      # `<name>_total`); exposition() restores the TYPE line.
      self.counter_names.append(metric.name)
      family = metrics_core.Metric(metric.name, metric.documentation, "unknown")
      for sample in metric.samples:
        if sample.name.endswith("_total"):
          family.add_sample(metric.name, sample.labels, sample.value)
      yield family


def exposition() -> bytes:
  """Prometheus text format of every metric, counters typed as upstream."""
  view = _UpstreamNames(get().registry)
  text = prometheus_exposition.generate_latest(view)
  for name in view.counter_names:
    text = text.replace(
        f"# TYPE {name} untyped\n".encode(),
        f"# TYPE {name} counter\n".encode(),
        1,
    )
  return text
