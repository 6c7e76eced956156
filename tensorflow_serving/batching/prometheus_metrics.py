"""Feeds batching events into the server's Prometheus metrics."""

from __future__ import annotations

from tensorflow_serving.batching import batching_session
from tensorflow_serving.util import metrics


class PrometheusBatchingMetrics(batching_session.BatchingMetrics):
  """Records upstream's `/tensorflow/serving/batching_session/*` metrics."""

  def __init__(self, thread_pool_name: str):
    m = metrics.get()
    self._queuing = m.batching_queuing_latency.labels(thread_pool_name)
    self._input = m.batching_input_batch_size.labels(thread_pool_name)
    self._processed = m.batching_processed_batch_size.labels(thread_pool_name)
    self._padding = m.batching_padding_size.labels(thread_pool_name)
    self._runs = m.batching_wrapped_run_count.labels(thread_pool_name)
    self._depth = m.batching_queue_depth.labels(thread_pool_name)

  def record_queuing_latency(self, micros: int) -> None:
    self._queuing.observe(micros)

  def record_input_batch_size(self, size: int) -> None:
    self._input.observe(size)

  def record_processed_batch_size(self, size: int) -> None:
    self._processed.observe(size)

  def record_padding_size(
      self, padding: int, processed_batch_size: int
  ) -> None:
    del processed_batch_size
    self._padding.observe(padding)

  def record_wrapped_run_count(self, count: int) -> None:
    self._runs.inc(count)

  def record_queue_depth(self, rows: int) -> None:
    self._depth.set(rows)
