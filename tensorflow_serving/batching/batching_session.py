"""Server-side batching of a bundle's `run` calls (upstream's BatchingSession).

`BatchingBundle` wraps a loaded bundle and satisfies the same servable
contract (servables/tensorflow/servable.py), so Predict, Classify, Regress,
MultiInference and warmup batch without knowing.
Each distinct (signature, input aliases, output aliases) gets its own queue on
the server-wide SharedBatchScheduler, created on first use. A batch
concatenates its tasks' inputs along dim 0, runs the inner bundle once, and
hands each task back its own rows.

A request is fully validated before it is enqueued, so a malformed request
fails alone instead of failing the batch it would have joined. Only numpy is
needed here; TensorFlow stays behind the inner bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any

import numpy as np

from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import shared_batch_scheduler
from tensorflow_serving.util import status

BatchingOptions = batching_options.BatchingOptions
SharedBatchScheduler = shared_batch_scheduler.SharedBatchScheduler

# Upstream's metric names; `BatchingMetrics` observers export them.
METRIC_PREFIX = "/tensorflow/serving/batching_session/"
QUEUING_LATENCY_METRIC = METRIC_PREFIX + "queuing_latency"
INPUT_BATCH_SIZE_METRIC = METRIC_PREFIX + "input_batch_size"
PROCESSED_BATCH_SIZE_METRIC = METRIC_PREFIX + "processed_batch_size"
PADDING_SIZE_METRIC = METRIC_PREFIX + "padding_size"
WRAPPED_RUN_COUNT_METRIC = METRIC_PREFIX + "wrapped_run_count"

# Upstream pads tensors of these ranks only (like TF's Pad op).
_MAX_PADDED_RANK = 6


class BatchingMetrics:
  """Observer of batching events; this base records nothing.

  The server subclasses it to feed Prometheus. Calls come from request
  threads (input sizes) and batch threads (the rest), so keep them cheap and
  thread-safe.
  """

  def record_queuing_latency(self, micros: int) -> None:
    """Time one task waited between enqueueing and its batch starting."""

  def record_input_batch_size(self, size: int) -> None:
    """Rows (dim 0) of one request, recorded when it is accepted."""

  def record_processed_batch_size(self, size: int) -> None:
    """Rows the wrapped bundle ran for one batch, padding included."""

  def record_padding_size(
      self, padding: int, processed_batch_size: int
  ) -> None:
    """Padding rows added to reach an allowed batch size."""

  def record_wrapped_run_count(self, count: int) -> None:
    """Runs of the wrapped bundle (one per batch)."""

  def record_queue_depth(self, rows: int) -> None:
    """Rows waiting in the scheduler's queues (after an enqueue or a take)."""


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
  """Server-wide batching: one scheduler, and the options for its queues.

  With `enable_per_model_batching_parameters`, a version is batched only if
  its directory holds `batching_params.pbtxt`, whose queue settings replace
  `options` (the pool stays the shared one).
  """

  scheduler: SharedBatchScheduler
  options: BatchingOptions
  enable_per_model_batching_parameters: bool = False
  metrics: BatchingMetrics = dataclasses.field(default_factory=BatchingMetrics)


@dataclasses.dataclass(slots=True)
class _Request:
  """The payload of one task: a validated request (or rows of one)."""

  sig: Any
  inputs: dict[str, np.ndarray]
  output_aliases: tuple[str, ...]  # In the caller's order.


def _request_size(inputs: Mapping[str, np.ndarray]) -> int:
  """Rows in a request: the shared dim 0 of all inputs (upstream's errors)."""
  if not inputs:
    raise status.invalid_argument(
        "Batching Run() must have at least one input tensor"
    )
  size = None
  for value in inputs.values():
    if value.ndim == 0:
      raise status.invalid_argument(
          "Batching Run() input tensors must have at least one dimension"
      )
    if size is None:
      size = value.shape[0]
    elif value.shape[0] != size:
      raise status.invalid_argument(
          "Batching Run() input tensors must have equal 0th-dimension size"
      )
  return int(size)


def _split_request(request: _Request, sizes: Sequence[int]) -> list[_Request]:
  """Cuts a request into consecutive row ranges (views, no copies)."""
  parts = []
  offset = 0
  for size in sizes:
    parts.append(
        dataclasses.replace(
            request,
            inputs={
                a: v[offset : offset + size] for a, v in request.inputs.items()
            },
        )
    )
    offset += size
  return parts


def _merge_results(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """Reassembles a split request's outputs, in the caller's alias order."""
  return {
      alias: np.concatenate([part[alias] for part in parts], axis=0)
      for alias in parts[0]
  }


def _shape_mismatch(alias: str) -> status.ServingError:
  return status.failed_precondition(
      f"Tensors with name '{alias}' from different tasks have different "
      "shapes and padding is turned off. Set pad_variable_length_inputs to "
      "true, or ensure that all tensors with the same name have equal "
      "dimensions starting with the first dim."
  )


def _pad_to_common_shape(
    alias: str, arrays: list[np.ndarray]
) -> list[np.ndarray]:
  """Pads dims >= 1 to the batch maximum with each tensor's first element."""
  rank = arrays[0].ndim
  if any(a.ndim != rank for a in arrays):
    raise status.failed_precondition(
        f"Tensors with name '{alias}' from different tasks have different "
        "ranks, so they cannot be padded to one shape."
    )
  if rank > _MAX_PADDED_RANK:
    raise status.invalid_argument(
        "Only tensors with rank from 1 to 6 can be padded."
    )
  target = tuple(max(a.shape[d] for a in arrays) for d in range(1, rank))
  padded = []
  for array in arrays:
    if array.shape[1:] == target:
      padded.append(array)
      continue
    if array.size == 0:
      raise status.invalid_argument(
          "Got empty tensor in batch of non-empty tensors."
      )
    out = np.full((array.shape[0],) + target, array.flat[0], dtype=array.dtype)
    out[tuple(slice(0, s) for s in array.shape)] = array
    padded.append(out)
  return padded


class BatchingBundle:
  """A bundle whose `run` calls are batched on a shared scheduler.

  Same interface as the wrapped bundle (`signatures`, `run`, `close`, and
  every other attribute passed through), plus `submit` for callers that must
  not block a thread per request.
  """

  def __init__(
      self,
      inner: Any,
      scheduler: SharedBatchScheduler,
      options: BatchingOptions,
      metrics: BatchingMetrics | None = None,
  ):
    self._inner = inner
    self._scheduler = scheduler
    self._options = options.validated()
    self._metrics = metrics or BatchingMetrics()
    self._queues: dict[tuple, shared_batch_scheduler.Queue] = {}
    self._lock = threading.Lock()
    self._closed = False
    self._validate = inner.validate
    self._run_validated = inner.run_validated

  # What the servable contract (servables/tensorflow/servable.py) asks; the
  # model's own facts come from the wrapped bundle.
  batches = True

  @property
  def inner(self) -> Any:
    return self._inner

  @property
  def export_dir(self) -> str:
    return self._inner.export_dir

  @property
  def meta_graph(self) -> Any:
    return self._inner.meta_graph

  @property
  def runtime(self) -> str:
    return self._inner.runtime

  @property
  def options(self) -> BatchingOptions:
    return self._options

  @property
  def signatures(self):
    return self._inner.signatures

  def run(
      self,
      sig: Any,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> dict[str, np.ndarray]:
    """Like the inner bundle's `run`, but executed as part of a batch."""
    return self.submit(sig, inputs, output_filter).result()

  def submit(
      self,
      sig: Any,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> concurrent.futures.Future:
    """Validates and enqueues a request; its outputs arrive on the future.

    Raises (without enqueueing) for an invalid request, a request larger than
    max_batch_size, or a full queue. The future fails with the batch's error
    if the batch as a whole fails.
    """
    output_aliases = tuple(self._validate(sig, inputs, output_filter))
    inputs = dict(inputs)
    size = _request_size(inputs)
    queue = self._queue_for(sig, inputs, output_aliases)
    self._metrics.record_input_batch_size(size)
    task = shared_batch_scheduler.Task(
        size, _Request(sig, inputs, output_aliases)
    )
    future = queue.schedule(task)
    self._metrics.record_queue_depth(self._scheduler.enqueued_rows)
    return future

  def validate(
      self,
      sig: Any,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> tuple[str, ...]:
    """The inner bundle's checks (what `submit` runs before enqueueing)."""
    return tuple(self._validate(sig, inputs, output_filter))

  def close(self) -> None:
    """Lets queued requests finish, removes the queues, closes the inner."""
    with self._lock:
      if self._closed:
        return
      self._closed = True
      queues = list(self._queues.values())
      self._queues.clear()
    for queue in queues:
      queue.close()
    for queue in queues:
      queue.close_and_wait()
    self._inner.close()

  def _queue_for(
      self,
      sig: Any,
      inputs: Mapping[str, np.ndarray],
      output_aliases: tuple[str, ...],
  ) -> shared_batch_scheduler.Queue:
    # Upstream keys queues by the sets of input and output tensors, so output
    # order does not matter; each task keeps its own order.
    fetch = tuple(sorted(output_aliases))
    key = (sig.key, tuple(sorted(inputs)), fetch)
    queue = self._queues.get(key)
    if queue is not None:
      return queue
    with self._lock:
      if self._closed:
        raise status.unavailable("The servable is being unloaded")
      queue = self._queues.get(key)
      if queue is None:
        queue = self._scheduler.add_queue(
            self._options,
            lambda tasks: self._process_batch(fetch, tasks),
            split_fn=_split_request,
            merge_fn=_merge_results,
        )
        self._queues[key] = queue
    return queue

  def _process_batch(
      self, fetch: tuple[str, ...], tasks: list[shared_batch_scheduler.Task]
  ) -> list[dict]:
    """Runs one batch: merge, pad, run once, split. Called on a batch thread."""
    start_ns = time.monotonic_ns()
    metrics = self._metrics
    metrics.record_queue_depth(self._scheduler.enqueued_rows)
    for task in tasks:
      metrics.record_queuing_latency((start_ns - task.enqueue_ns) // 1000)
    batch_size = sum(t.size for t in tasks)
    padding = (
        self._options.padded_batch_size(batch_size) - batch_size
        if batch_size
        else 0
    )
    requests: list[_Request] = [t.payload for t in tasks]
    if len(requests) == 1 and not padding:
      # A batch of one (light load): its inputs are the batch, no copy.
      merged = requests[0].inputs
    else:
      merged = self._merge_inputs(requests, tasks, padding)
    metrics.record_processed_batch_size(batch_size + padding)
    metrics.record_padding_size(padding, batch_size + padding)
    metrics.record_wrapped_run_count(1)
    sig = requests[0].sig
    outputs = self._run_validated(sig, merged, fetch)
    expected = batch_size + padding
    for alias in fetch:
      value = outputs[alias]
      if value.ndim == 0:
        raise status.internal(
            f"Batched output tensor has 0 dimensions (output '{alias}'); "
            "batching needs a batch dimension on every output"
        )
      if value.shape[0] != expected:
        raise status.internal(
            "Batched output tensor's 0th dimension does not equal the sum of "
            f"the 0th dimension sizes of the input tensors (output '{alias}' "
            f"has {value.shape[0]} rows; the batch has {expected})"
        )
    results = []
    offset = 0
    # (start, end, rows run) for request tracing (model_servers/tracing.py),
    # read from each task's future by whoever traces it.
    timing = (start_ns, time.monotonic_ns(), batch_size + padding)
    for task, request in zip(tasks, requests):
      end = offset + task.size
      results.append(
          {a: outputs[a][offset:end] for a in request.output_aliases}
      )
      task.future.batch_timing = (task.enqueue_ns, *timing)  # type: ignore[attr-defined]
      offset = end
    return results

  def _merge_inputs(
      self,
      requests: list[_Request],
      tasks: list[shared_batch_scheduler.Task],
      padding: int,
  ) -> dict[str, np.ndarray]:
    pad_shapes = self._options.pad_variable_length_inputs
    # Padding repeats the first row of the last task that has one.
    pad_source = next(
        (i for i in range(len(tasks) - 1, -1, -1) if tasks[i].size), None
    )
    merged = {}
    for alias in sorted(requests[0].inputs):  # Deterministic error order.
      arrays = [r.inputs[alias] for r in requests]
      if pad_shapes:
        arrays = _pad_to_common_shape(alias, arrays)
      else:
        inner_shape = arrays[0].shape[1:]
        if any(a.shape[1:] != inner_shape for a in arrays[1:]):
          raise _shape_mismatch(alias)
      if padding and pad_source is not None:
        row = arrays[pad_source][:1]
        arrays.append(np.repeat(row, padding, axis=0))
      merged[alias] = (
          arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
      )
    return merged


def wrap(
    bundle: Any, config: BatchingConfig, options: BatchingOptions | None = None
) -> BatchingBundle:
  """Wraps `bundle` on the config's scheduler (`options` overrides queues)."""
  return BatchingBundle(
      bundle, config.scheduler, options or config.options, config.metrics
  )
