"""One LoggingConfig's logger: samples requests and builds their log record.

Upstream's RequestLogger samples with `sampling_config.sampling_rate` and
hands a PredictionLog to its collector. Here the request side only samples
and queues what it already holds (request_log_writer); the PredictionLog is
built and written on the writer's thread, so a sampled request costs its
serving thread no encoding and no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
import random
import time
from typing import Protocol

from tensorflow_serving.apis import logging_pb2
from tensorflow_serving.config import logging_config_pb2
from tensorflow_serving.core import log_collector as log_collector_lib

LoggingConfig = logging_config_pb2.LoggingConfig
LogMetadata = logging_pb2.LogMetadata


class LogEntry(Protocol):
  """A served request as the pipeline hands it over (no encoding done yet)."""

  @property
  def model_name(self) -> str:
    ...

  @property
  def timestamp_s(self) -> float:
    """When the request was served (seconds since the epoch)."""
    ...

  @property
  def nbytes(self) -> int:
    """About how much memory the entry holds on to while queued."""
    ...

  def serialize(self, metadata: LogMetadata) -> bytes:
    """The serialized PredictionLog; fills metadata.model_spec itself."""
    ...


class RequestLogger:
  """Samples requests for one LoggingConfig and owns its collector."""

  def __init__(
      self,
      config: LoggingConfig,
      collector: log_collector_lib.LogCollector,
      saved_model_tags: Sequence[str] = (),
  ):
    self.config = config
    self.collector = collector
    self._rate = config.sampling_config.sampling_rate
    self._tags = tuple(saved_model_tags)
    # random.random is thread-safe (one generator shared by the process).
    self._random = random.random
    self._metadata: LogMetadata | None = None  # The last second's.

  def sample(self) -> bool:
    """True with probability sampling_rate (upstream's uniform sampler)."""
    return self._random() < self._rate

  def metadata(self, timestamp_s: float | None = None) -> LogMetadata:
    """LogMetadata with this config's sampling config and the model's tags.

    Shared by the entries of one second (the writer thread logs thousands a
    second): read it, do not modify it.
    """
    secs = int(time.time() if timestamp_s is None else timestamp_s)
    metadata = self._metadata
    if metadata is None or metadata.timestamp_secs != secs:
      metadata = LogMetadata(
          sampling_config=self.config.sampling_config, timestamp_secs=secs
      )
      metadata.saved_model_tags.extend(self._tags)
      self._metadata = metadata
    return metadata
