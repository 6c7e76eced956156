"""The server's request loggers: model name -> loggers, kept across reloads.

As upstream's ServerRequestLogger, loggers are keyed by their serialized
LoggingConfig: a config reload that keeps a model's logging_config keeps its
logger (and its open file), a changed one gets a new logger, and loggers no
config names any more are closed. Unlike upstream, the loggers for the new
config are all created before any is replaced, so a config naming an
unknown collector type changes nothing.

`by_model` is replaced whole and read without a lock: when no model logs it
is empty, and the request path costs one attribute check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import itertools
import threading

from tensorflow_serving.core import log_collector as log_collector_lib
from tensorflow_serving.core import request_log_writer
from tensorflow_serving.core import request_logger as request_logger_lib

LoggingConfig = request_logger_lib.LoggingConfig
RequestLogger = request_logger_lib.RequestLogger


class ServerRequestLogger:
  """Samples each served request for its model's loggers and queues it."""

  def __init__(
      self,
      writer: request_log_writer.RequestLogWriter,
      factories: Mapping[str, log_collector_lib.Factory],
      stream: str = "",
      saved_model_tags: Sequence[str] = (),
  ):
    self._writer = writer
    self._factories = dict(factories)
    self._stream = stream
    self._tags = tuple(saved_model_tags)
    self._lock = threading.Lock()
    self._ids = itertools.count()
    self._by_config: dict[bytes, RequestLogger] = {}
    self.by_model: dict[str, tuple[RequestLogger, ...]] = {}

  def update(self, configs: Mapping[str, Sequence[LoggingConfig]]) -> None:
    """Installs loggers for `configs` (model name -> its LoggingConfigs).

    Raises upstream's NOT_FOUND for an unknown collector type, leaving the
    current loggers in place.
    """
    with self._lock:
      by_config: dict[bytes, RequestLogger] = {}
      by_model: dict[str, list[RequestLogger]] = {}
      created: list[RequestLogger] = []
      try:
        for model_name, model_configs in configs.items():
          for config in model_configs:
            key = config.SerializeToString(deterministic=True)
            logger = by_config.get(key) or self._by_config.get(key)
            if logger is None:
              collector = log_collector_lib.create(
                  config.log_collector_config,
                  log_collector_lib.CollectorContext(
                      next(self._ids), self._stream
                  ),
                  self._factories,
              )
              logger = RequestLogger(config, collector, self._tags)
              created.append(logger)
            by_config[key] = logger
            by_model.setdefault(model_name, []).append(logger)
      except BaseException:
        for logger in created:
          logger.collector.close()
        raise
      removed = [
          logger
          for key, logger in self._by_config.items()
          if key not in by_config
      ]
      self._by_config = by_config
      self.by_model = {name: tuple(ls) for name, ls in by_model.items()}
    if by_config:
      self._writer.start()
    for logger in removed:
      self._writer.close_collector(logger.collector)

  def log(
      self,
      model_name: str,
      make_entry: Callable[[], request_logger_lib.LogEntry],
  ) -> None:
    """Queues the request for each of the model's loggers that samples it.

    The entry is made only when some logger samples the request.
    """
    loggers = self.by_model.get(model_name)
    if not loggers:
      return
    entry = None
    for logger in loggers:
      if logger.sample():
        if entry is None:
          entry = make_entry()
        self._writer.submit(logger, entry)

  def stop(self) -> None:
    """Writes what is queued (bounded), closes every file, stops the thread."""
    with self._lock:
      loggers = list(self._by_config.values())
      self._by_config = {}
      self.by_model = {}
    for logger in loggers:
      self._writer.close_collector(logger.collector)
    self._writer.stop()
