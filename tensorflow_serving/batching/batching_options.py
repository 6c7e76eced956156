"""Validated batching settings, read from a `BatchingParameters` text proto.

The proto leaves every wrapper field optional, and upstream fills the gaps
with its library defaults and rejects bad combinations when the model is
wrapped. Doing both once here gives the scheduler and the batching session
plain ints with nothing left to check, and gives users upstream's messages.
This module needs neither TensorFlow nor the protobuf runtime: it only reads
the message through `HasField` and attribute access.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

from tensorflow_serving.util import status

# The library defaults of SharedBatchScheduler's QueueOptions.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
# The name tensorflow_model_server gives its pool (the library's is different).
DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"


def default_num_batch_threads() -> int:
  """Upstream uses port::MaxParallelism(), the number of schedulable cores."""
  try:
    return len(os.sched_getaffinity(0)) or 1
  except (AttributeError, OSError):
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
  """Everything one batching queue and its session wrapper need.

  `num_batch_threads` and `thread_pool_name` describe the server-wide shared
  scheduler; the rest applies per queue. Construct through `from_proto` or
  call `validated()` so the invariants the scheduler relies on hold.
  """

  max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
  batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
  max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
  num_batch_threads: int = dataclasses.field(
      default_factory=default_num_batch_threads
  )
  thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
  allowed_batch_sizes: tuple[int, ...] = ()
  pad_variable_length_inputs: bool = False
  enable_large_batch_splitting: bool = False
  # None means "same as max_batch_size"; only honoured with splitting.
  max_execution_batch_size: int | None = None

  @classmethod
  def from_proto(cls, params: Any) -> BatchingOptions:
    """Reads a BatchingParameters message; unset wrappers take the defaults.

    Raises INVALID_ARGUMENT (upstream's messages) for invalid settings.
    """

    def wrapped(name: str, default):
      return getattr(params, name).value if params.HasField(name) else default

    splitting = wrapped("enable_large_batch_splitting", False)
    return cls(
        max_batch_size=wrapped("max_batch_size", DEFAULT_MAX_BATCH_SIZE),
        batch_timeout_micros=wrapped(
            "batch_timeout_micros", DEFAULT_BATCH_TIMEOUT_MICROS
        ),
        max_enqueued_batches=wrapped(
            "max_enqueued_batches", DEFAULT_MAX_ENQUEUED_BATCHES
        ),
        num_batch_threads=wrapped(
            "num_batch_threads", default_num_batch_threads()
        ),
        thread_pool_name=wrapped("thread_pool_name", DEFAULT_THREAD_POOL_NAME),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
        enable_large_batch_splitting=splitting,
        max_execution_batch_size=(
            wrapped("max_execution_batch_size", None) if splitting else None
        ),
    ).validated()

  @property
  def execution_batch_size(self) -> int:
    """The largest batch that actually runs (and the open batch's capacity)."""
    if self.enable_large_batch_splitting and (
        self.max_execution_batch_size is not None
    ):
      return self.max_execution_batch_size
    return self.max_batch_size

  def validated(self) -> BatchingOptions:
    """Returns a normalized copy, or raises INVALID_ARGUMENT.

    Normalizes like upstream: max_enqueued_batches 0 means 1 unless splitting
    (low-QPS models rely on it), and max_execution_batch_size is resolved.
    """
    if self.num_batch_threads < 1:
      raise status.invalid_argument(
          f"num_batch_threads must be positive; was {self.num_batch_threads}"
      )
    if self.max_batch_size < 1:
      raise status.invalid_argument(
          f"max_batch_size must be positive; was {self.max_batch_size}"
      )
    if self.batch_timeout_micros < 0:
      raise status.invalid_argument(
          "batch_timeout_micros must be non-negative; was "
          f"{self.batch_timeout_micros}"
      )
    enqueued = self.max_enqueued_batches
    if enqueued == 0 and not self.enable_large_batch_splitting:
      enqueued = 1
    if enqueued < 1:
      raise status.invalid_argument(
          f"max_enqueued_batches must be positive; was {enqueued}"
      )
    execution = self.execution_batch_size
    if self.enable_large_batch_splitting:
      if execution < 1:
        raise status.invalid_argument(
            f"max_execution_batch_size must be positive; was {execution}"
        )
      if self.max_batch_size < execution:
        raise status.invalid_argument(
            "When enable_large_batch_splitting is true, input_batch_size_limit "
            "must be greater than or equal to max_execution_batch_size; "
            f"max_batch_size is {self.max_batch_size} and "
            f"max_execution_batch_size is {execution}"
        )
    self._check_allowed_batch_sizes(execution)
    return dataclasses.replace(
        self,
        max_enqueued_batches=enqueued,
        allowed_batch_sizes=tuple(int(s) for s in self.allowed_batch_sizes),
        max_execution_batch_size=execution,
    )

  def _check_allowed_batch_sizes(self, execution: int) -> None:
    sizes = self.allowed_batch_sizes
    if not sizes:
      return
    last = sizes[-1]
    if not self.enable_large_batch_splitting:
      # Upstream checks ordering only in splitting mode (b/161641195).
      if last != self.max_batch_size:
        raise status.invalid_argument(
            "Last entry in allowed_batch_sizes must match max_batch_size; last "
            f"entry was {last}; expected {self.max_batch_size}"
        )
      return
    if any(b <= a for a, b in itertools.pairwise(sizes)):
      raise status.invalid_argument(
          "allowed_batch_sizes entries must be monotonically increasing"
      )
    if last > self.max_batch_size:
      raise status.invalid_argument(
          "Last entry in allowed_batch_sizes must be less than or equal to "
          f"max_batch_size; last entry was {last}; expected "
          f"{self.max_batch_size}"
      )
    if last != execution:
      raise status.invalid_argument(
          "Last entry in allowed_batch_sizes must be equal to "
          f"max_execution_batch_size; last entry was {last}; expected "
          f"{execution}"
      )

  def padded_batch_size(self, batch_size: int) -> int:
    """The first allowed size that fits `batch_size` (list order, as upstream).

    Without allowed sizes, or if none fits, the batch runs unpadded.
    """
    for allowed in self.allowed_batch_sizes:
      if allowed >= batch_size:
        return allowed
    return batch_size
