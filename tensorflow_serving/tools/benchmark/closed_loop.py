"""The closed loop behind the Python clients: the window and the streams.

Each worker process keeps its share of --concurrency requests outstanding:
a stream sends, awaits the answer, checks it, and sends the next image.
Everything possible happens before the clock starts (each image's request is
serialized once), and only requests sent and answered inside the
measurement window count.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
import itertools
import time
from typing import Any

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload as workload_lib

# After the window closes, how long in-flight requests get to finish.
DRAIN_S = 5.0


class Window:
  """A worker's warmup-then-measure clock and what completed inside it.

  Not thread-safe by itself: a client whose answers arrive on several
  threads (grpcio's futures) calls it under its own lock.
  """

  def __init__(
      self,
      duration_s: float,
      max_requests: int,
      server_pid: int,
      sample_host: bool = True,
  ):
    self.duration_s = duration_s
    self._max_requests = max_requests
    self._probe = probes.ResourceProbe(server_pid, host=sample_host)
    self._usage: tuple[Any, ...] = (0.0, None, None, None)
    self._listeners: list[Callable[[], None]] = []
    self._open_listeners: list[Callable[[], None]] = []
    self.start: float | None = None
    self.end: float | None = None
    self.stopping = False
    self.latencies: list[float] = []
    self.errors: collections.Counter[str] = collections.Counter()
    self._count = 0

  def on_close(self, listener: Callable[[], None]) -> None:
    self._listeners.append(listener)

  def on_open(self, listener: Callable[[], None]) -> None:
    self._open_listeners.append(listener)

  def open(self) -> None:
    """Starts measuring (end of warmup); the caller closes it in time."""
    self._probe.start()
    self.start = time.perf_counter()
    for listener in self._open_listeners:
      listener()

  def close(self) -> None:
    if self.end is not None:
      return
    self.end = time.perf_counter()
    self._usage = self._probe.stop()
    self.stopping = True
    for listener in self._listeners:
      listener()

  def record(self, t0: float, t1: float, error: workload_lib.ErrorKind) -> None:
    if self.start is None or t0 < self.start or self.end is not None:
      return
    if error is None:
      self.latencies.append(t1 - t0)
    else:
      self.errors[error] += 1
    self._count += 1
    if self._max_requests and self._count >= self._max_requests:
      self.close()

  def result(self) -> stats.WorkerResult:
    cpu, server_cpu, threads, host = self._usage
    return stats.WorkerResult(
        latencies_s=self.latencies,
        errors=dict(self.errors),
        elapsed_s=(self.end or time.perf_counter()) - (self.start or 0.0),
        cpu_s=cpu,
        server_cpu_s=server_cpu,
        server_threads=threads,
        host=host,
    )


Send = Callable[[int], Awaitable[workload_lib.ErrorKind]]


async def drive(
    senders: Sequence[Send],
    window: Window,
    warmup_s: float,
    num_bodies: int,
    offset: int = 0,
    stride: int = 1,
) -> None:
  """Runs one closed-loop stream per sender until the window closes.

  Streams take images round-robin from a shared counter, so concurrent
  requests carry different images; `offset`/`stride` interleave workers.
  """
  counter = itertools.count()
  perf_counter = time.perf_counter

  async def stream(send: Send) -> None:
    while not window.stopping:
      index = (offset + stride * next(counter)) % num_bodies
      t0 = perf_counter()
      error = await send(index)
      window.record(t0, perf_counter(), error)

  loop = asyncio.get_running_loop()
  closed = asyncio.Event()
  window.on_close(closed.set)

  def open_window() -> None:
    window.open()
    if window.duration_s > 0:
      loop.call_later(window.duration_s, window.close)

  if warmup_s > 0:
    loop.call_later(warmup_s, open_window)
  else:
    open_window()
  tasks = [asyncio.create_task(stream(send)) for send in senders]
  waiter = asyncio.create_task(closed.wait())
  # A stream only ends early on a bug; surface it instead of idling.
  await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
  for task in tasks:
    if task.done() and task.exception() is not None:
      waiter.cancel()
      for other in tasks:
        other.cancel()
      raise task.exception()
  _, pending = await asyncio.wait(tasks, timeout=DRAIN_S)
  for task in pending:
    task.cancel()
  await asyncio.gather(*pending, return_exceptions=True)


def new_event_loop(config: load_config.LoadConfig) -> asyncio.AbstractEventLoop:
  """uvloop where asked, and by default unless grpc.aio runs on the loop."""
  want = config.event_loop
  if want == "auto":
    want = "asyncio" if config.client_name == "grpcio_aio" else "uvloop"
  if want == "uvloop":
    try:
      import uvloop  # pylint: disable=g-import-not-at-top

      return uvloop.new_event_loop()
    except ImportError:
      if config.event_loop == "uvloop":
        raise
  return asyncio.new_event_loop()
