"""Where sampled request logs go: collector types, registered by name.

A model's `logging_config.log_collector_config.type` names a collector type
among those the server was given (ServerCoreOptions.log_collectors; upstream's
open-source binary registers none, which is why a logging_config fails
there). A collector
receives serialized PredictionLog protos, one call per log, always from the
same thread (core/request_log_writer), so implementations need no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import dataclasses
from typing import Protocol

from tensorflow_serving.config import log_collector_config_pb2
from tensorflow_serving.util import status

LogCollectorConfig = log_collector_config_pb2.LogCollectorConfig


class LogCollector(Protocol):
  """A sink for serialized logs; it may buffer until `flush`."""

  def collect_message(self, message: bytes) -> None:
    """Writes one log; raises OSError (or ServingError) when it cannot."""
    ...

  def flush(self) -> None:
    """Makes what was collected so far visible to readers."""
    ...

  def close(self) -> None:
    ...


@dataclasses.dataclass(frozen=True)
class CollectorContext:
  """What a factory is told beside the config.

  `id` tells apart collectors created in one process (upstream's `id`
  argument); `stream` names this process's stream when several processes
  log under one prefix (--num_workers), "" for a single process.
  """

  id: int
  stream: str = ""


Factory = Callable[[LogCollectorConfig, CollectorContext], LogCollector]


def create(
    config: LogCollectorConfig,
    context: CollectorContext,
    factories: Mapping[str, Factory],
) -> LogCollector:
  """A collector of the config's type; upstream's NOT_FOUND when unknown."""
  factory = factories.get(config.type)
  if factory is None:
    raise status.not_found(
        f"Cannot find LogCollector::Factory for type: {config.type}"
    )
  return factory(config, context)
