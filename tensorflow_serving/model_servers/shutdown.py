"""SIGTERM and SIGINT for the whole life of a server process, within a bound.

Installed first thing in main, before TensorFlow is imported, so that a
signal is never lost (a shell's `cmd &` even starts the process with SIGINT
ignored). What the first signal does depends on the phase:

- while starting (imports, flags), nothing is in flight: the process exits
  at once with 0, as upstream's binary would die;
- later, the phase's stop callbacks run (stop loading, or drain requests),
  and a watchdog makes sure the process is gone within the drain bound
  (--shutdown_grace_seconds) plus CLEANUP_S, whatever still hangs (a model
  load TensorFlow cannot interrupt, a request thread stuck in a model);
  past it the process exits with 0 all the same, having logged why.

A second signal exits at once with 128 + the signal number, as a shell
reports a process killed by it.

This module imports no TensorFlow, so the supervisor of --num_workers can
use it too.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import signal
import sys
import threading
import time

from absl import logging

from tensorflow_serving.util import native_stderr

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_GRACE_S = 30.0
# Past the drain: unloading models and closing the process.
CLEANUP_S = 5.0

_lock = threading.Lock()
_requested = threading.Event()
_callbacks: list[Callable[[], None]] = []
_grace_s = DEFAULT_GRACE_S


def install(grace_s: float = DEFAULT_GRACE_S) -> None:
  """Handles SIGINT and SIGTERM from now on (main thread only)."""
  global _grace_s
  _grace_s = max(0.0, grace_s)
  for sig in SIGNALS:
    signal.signal(sig, lambda signum, _frame: handle(signum))


def grace_s() -> float:
  return _grace_s


def requested() -> bool:
  return _requested.is_set()


def on_stop(callback: Callable[[], None]) -> Callable[[], None]:
  """Runs `callback` on the first signal (at once if it came already).

  Returns a function that unregisters it. While none is registered, the
  first signal exits the process at once.
  """
  with _lock:
    _callbacks.append(callback)
    already = _requested.is_set()
  if already:
    callback()

  def unregister() -> None:
    with _lock:
      if callback in _callbacks:
        _callbacks.remove(callback)

  return unregister


def handle(signum: int) -> None:
  """What a signal does; also for asyncio's add_signal_handler."""
  name = signal.Signals(signum).name
  with _lock:
    again = _requested.is_set()
    _requested.set()
    callbacks = list(_callbacks)
  if again:
    _exit(128 + signum, f"{name} again: exiting now.")
  if not callbacks:
    _exit(0, f"{name} while starting: exiting.")
  logging.info(
      "%s: stopping the model server (in-flight requests get %.0f s).",
      name,
      _grace_s,
  )
  _start_watchdog(_grace_s + CLEANUP_S)
  for callback in callbacks:
    callback()


def _start_watchdog(bound_s: float) -> None:
  def watch() -> None:
    time.sleep(bound_s)
    _exit(0, f"The model server did not stop within {bound_s:.0f} s: exiting.")

  threading.Thread(target=watch, name="shutdown_watchdog", daemon=True).start()


def _exit(code: int, line: str) -> None:
  # A signal during TensorFlow's import (tensorflow_startup) lands while
  # stderr is captured: give it back first, or the lines would be lost.
  native_stderr.release()
  logging.warning("%s", line)
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  logging.flush()
  os._exit(code)  # pylint: disable=protected-access
