"""A scriptable Loader for lifecycle tests: can fail, block and count calls."""

from __future__ import annotations

import threading
from typing import Any

from tensorflow_serving.core import loader
from tensorflow_serving.resources import resources
from tensorflow_serving.util import status

# How long a blocked load/unload waits for its gate before failing the test
# run instead of hanging it.
GATE_TIMEOUT_S = 10.0


class LoadedCounter:
  """Counts servables loaded at once across loaders (max included)."""

  def __init__(self):
    self._lock = threading.Lock()
    self.current = 0
    self.max = 0

  def add(self, delta: int) -> None:
    with self._lock:
      self.current += delta
      self.max = max(self.max, self.current)


class FakeLoader(loader.Loader):
  """Loader whose behaviour a test scripts.

  The servable is `servable`, or the loader itself when None (so a request
  can check `handle.servable.loaded`). The first `fail_times` loads raise
  `error`; `block_load`/`block_unload` make the
  call wait until the test sets `allow_load`/`allow_unload`, so a test can
  observe the manager while a load or unload is in progress.
  """

  def __init__(
      self,
      servable: Any = None,
      *,
      estimate: resources.ResourceAllocation | None = None,
      fail_times: float = 0,
      error: status.ServingError | None = None,
      block_load: bool = False,
      block_unload: bool = False,
      counter: LoadedCounter | None = None,
      estimate_error: Exception | None = None,
  ):
    self._servable = servable
    self._estimate = estimate or resources.ResourceAllocation()
    self._estimate_error = estimate_error
    self._fail_times = fail_times
    self._error = error or status.unknown("load failed")
    self._counter = counter
    self.load_calls = 0
    self.unload_calls = 0
    self.loaded = False
    self.load_started = threading.Event()
    self.unload_started = threading.Event()
    self.allow_load = threading.Event()
    self.allow_unload = threading.Event()
    if not block_load:
      self.allow_load.set()
    if not block_unload:
      self.allow_unload.set()

  def estimate_resources(self) -> resources.ResourceAllocation:
    if self._estimate_error is not None:
      raise self._estimate_error
    return self._estimate

  def load(self) -> None:
    self.load_calls += 1
    self.load_started.set()
    if not self.allow_load.wait(GATE_TIMEOUT_S):
      raise TimeoutError("FakeLoader load gate never opened")
    if self.load_calls <= self._fail_times:
      raise self._error
    self.loaded = True
    if self._counter is not None:
      self._counter.add(1)

  def unload(self) -> None:
    self.unload_calls += 1
    self.unload_started.set()
    if not self.allow_unload.wait(GATE_TIMEOUT_S):
      raise TimeoutError("FakeLoader unload gate never opened")
    self.loaded = False
    if self._counter is not None:
      self._counter.add(-1)

  def servable(self) -> Any:
    return self if self._servable is None else self._servable
