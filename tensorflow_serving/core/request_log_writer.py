"""The request-log queue and the one thread that encodes and writes it.

Serving threads and the event loop only `submit` (a deque append under a
lock); a slow or full disk therefore never slows a request. The writer is
not woken per entry (that costs the request path a condition notify and the
writer a context switch per request): it drains the queue every
`idle_flush_s`, or as soon as a quarter of `max_entries` is queued. The queue is
bounded in entries and in the bytes its entries hold: past either bound an
entry is dropped and reported as RESOURCE_EXHAUSTED, never buffered. Every
outcome (OK, the write's error, or the drop) goes to `on_result`, which the
server turns into upstream's request_log_count{model_name,status_code}.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
import dataclasses
import errno
import threading
import time

from absl import logging

from tensorflow_serving.core import log_collector as log_collector_lib
from tensorflow_serving.core import request_logger as request_logger_lib
from tensorflow_serving.util import status

ResultCallback = Callable[[str, str], None]  # (model_name, status code name)

QUEUE_FULL = status.Code.RESOURCE_EXHAUSTED.name


@dataclasses.dataclass(frozen=True)
class QueueOptions:
  """The queue's bounds, and how often an idle writer flushes its files."""

  max_entries: int = 1024
  max_bytes: int = 64 << 20
  idle_flush_s: float = 1.0
  # At shutdown, queued entries are written for at most this long.
  drain_timeout_s: float = 5.0


def _error_code(exc: BaseException) -> str:
  if isinstance(exc, status.ServingError):
    return exc.code.name
  if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
    return status.Code.RESOURCE_EXHAUSTED.name
  return status.Code.INTERNAL.name


class RequestLogWriter:
  """A bounded queue of (logger, entry) drained by one daemon thread."""

  def __init__(
      self,
      options: QueueOptions,
      on_result: ResultCallback,
      clock=time.monotonic,
  ):
    self._options = options
    self._on_result = on_result
    self._clock = clock
    self._lock = threading.Lock()
    # Set to wake the writer before its next timed drain.
    self._wake = threading.Event()
    self._wake_at = max(1, options.max_entries // 4)
    self._queue: collections.deque = collections.deque()
    self._queued_bytes = 0
    self._closing: list[log_collector_lib.LogCollector] = []
    self._stopping = False
    self._thread: threading.Thread | None = None
    # Collectors written to and not closed since (writer thread only).
    self._open: dict[int, log_collector_lib.LogCollector] = {}
    self._last_warning = -float("inf")
    self._suppressed = 0

  def start(self) -> None:
    with self._lock:
      if self._thread is None and not self._stopping:
        self._thread = threading.Thread(
            target=self._run, name="request_log_writer", daemon=True
        )
        self._thread.start()

  def submit(
      self,
      logger: request_logger_lib.RequestLogger,
      entry: request_logger_lib.LogEntry,
  ) -> bool:
    """Queues one entry; False (and a RESOURCE_EXHAUSTED result) if full."""
    size = entry.nbytes
    with self._lock:
      accepted = not self._stopping and (
          len(self._queue) < self._options.max_entries
          and self._queued_bytes + size <= self._options.max_bytes
      )
      if accepted:
        self._queue.append((logger, entry, size))
        self._queued_bytes += size
        wake = len(self._queue) == self._wake_at
    if accepted and wake:
      self._wake.set()
    if not accepted:
      self._on_result(entry.model_name, QUEUE_FULL)
    return accepted

  def close_collector(self, collector: log_collector_lib.LogCollector) -> None:
    """Closes `collector` on the writer thread, after what is queued for it."""
    with self._lock:
      if self._thread is None:
        collector.close()
        return
      self._queue.append((None, collector, 0))
    self._wake.set()

  @property
  def queued(self) -> int:
    return len(self._queue)

  def stop(self) -> None:
    """Writes what is queued (bounded by drain_timeout_s) and stops."""
    with self._lock:
      self._stopping = True
      thread = self._thread
    self._wake.set()
    if thread is not None:
      thread.join(self._options.drain_timeout_s)
      if thread.is_alive():
        logging.warning(
            "Request log writer still busy after %.1f s at shutdown; "
            "the entries still queued are lost.",
            self._options.drain_timeout_s,
        )

  def _run(self) -> None:
    deadline = None
    while True:
      if not self._stopping:
        self._wake.wait(self._options.idle_flush_s)
      self._wake.clear()
      with self._lock:
        batch = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        stopping = self._stopping
      if stopping and deadline is None:
        deadline = self._clock() + self._options.drain_timeout_s
      for logger, item, _ in batch:
        if logger is None:
          self._close(item)
        elif deadline is None or self._clock() <= deadline:
          self._write(logger, item)
      # Also when idle: a flush makes records visible and closes old files.
      self._flush_all()
      if stopping:
        with self._lock:
          done = not self._queue
        if done:
          for collector in list(self._open.values()):
            self._close(collector)
          return

  def _write(self, logger, entry) -> None:
    try:
      data = entry.serialize(logger.metadata(entry.timestamp_s))
      logger.collector.collect_message(data)
    except Exception as exc:  # pylint: disable=broad-except
      self._warn(exc)
      self._on_result(entry.model_name, _error_code(exc))
      return
    self._open[id(logger.collector)] = logger.collector
    self._on_result(entry.model_name, status.Code.OK.name)

  def _flush_all(self) -> None:
    for collector in list(self._open.values()):
      try:
        collector.flush()
      except Exception as exc:  # pylint: disable=broad-except
        self._warn(exc)

  def _close(self, collector) -> None:
    self._open.pop(id(collector), None)
    try:
      collector.close()
    except Exception as exc:  # pylint: disable=broad-except
      self._warn(exc)

  def _warn(self, exc: BaseException) -> None:
    """One warning a minute at most: a full disk fails every write."""
    now = self._clock()
    if now - self._last_warning < 60.0:
      self._suppressed += 1
      return
    logging.warning(
        "Request log write failed (%d more failures since the last "
        "warning): %s",
        self._suppressed,
        exc,
    )
    self._last_warning = now
    self._suppressed = 0
