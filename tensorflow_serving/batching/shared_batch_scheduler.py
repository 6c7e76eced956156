"""One pool of batch threads shared by every batching queue in the server.

Upstream gives each (servable version, signature) its own queue but runs all
of them on one pool, so a server with many models does not oversubscribe the
cores; the pool visits the queues round-robin. A queue holds one open batch
that tasks join, plus closed batches waiting for a thread, at most
`max_enqueued_batches` in all. A batch is handed to a thread once it is full,
or, when its oldest task has waited `batch_timeout_micros`, as soon as a
thread is free.

Every task carries a `concurrent.futures.Future`: blocking callers wait on
`.result()`, asyncio callers on `asyncio.wrap_future(...)`, so nothing here
assumes a thread parked per request. Threads sleep on one condition variable;
only one idle thread at a time sleeps with a timeout (for the earliest open
batch deadline), the others until notified, so idle pools do not wake in a
herd. No TensorFlow or numpy here: payloads are opaque.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
import concurrent.futures
import threading
import time
from typing import Any

from tensorflow_serving.batching import batching_options
from tensorflow_serving.util import status

# Queue, Task and the scheduler share one lock and reach into each other.
# pylint: disable=protected-access

QUEUE_FULL_MESSAGE = (
    "The batch scheduling queue to which this task was submitted is full"
)

# (payload, sizes) -> one payload per size, splitting along rows in order.
SplitFn = Callable[[Any, Sequence[int]], list]
# Results of a split task's parts, in row order -> the task's result.
MergeFn = Callable[[list], Any]
# The tasks of one batch -> one result per task, in the same order. Raising
# fails every task of the batch with that exception.
ProcessBatchFn = Callable[[list["Task"]], Sequence[Any]]


class _SplitState:
  """Collects the parts of a split task and completes the original's future."""

  __slots__ = ("future", "results", "remaining", "error", "merge_fn", "lock")

  def __init__(
      self, future: concurrent.futures.Future, parts: int, merge_fn: MergeFn
  ):
    self.future = future
    self.results: list[Any] = [None] * parts
    self.remaining = parts
    self.error: BaseException | None = None
    self.merge_fn = merge_fn
    self.lock = threading.Lock()

  def part_done(
      self, index: int, result: Any, error: BaseException | None
  ) -> None:
    with self.lock:
      if error is not None and self.error is None:
        self.error = error  # The first error wins, as upstream.
      else:
        self.results[index] = result
      self.remaining -= 1
      if self.remaining:
        return
    if self.error is not None:
      _set_exception(self.future, self.error)
      return
    try:
      merged = self.merge_fn(self.results)
    except BaseException as exc:  # pylint: disable=broad-except
      _set_exception(self.future, exc)
    else:
      _set_result(self.future, merged)


def _set_result(future: concurrent.futures.Future, result: Any) -> None:
  try:
    future.set_result(result)
  except concurrent.futures.InvalidStateError:
    pass  # Cancelled by its caller: nobody is waiting for it.


def _set_exception(
    future: concurrent.futures.Future, error: BaseException
) -> None:
  try:
    future.set_exception(error)
  except concurrent.futures.InvalidStateError:
    pass


class Task:
  """A unit of work of `size` rows; its outcome arrives on `future`.

  `payload` is whatever the batch function needs (for the batching session:
  the request's tensors). `enqueue_ns` (time.monotonic_ns) is set when the
  task is scheduled, so the batch function can measure queuing latency.
  """

  __slots__ = (
      "size",
      "payload",
      "future",
      "enqueue_ns",
      "_split",
      "_split_index",
  )

  def __init__(self, size: int, payload: Any = None):
    if size < 0:
      raise ValueError(f"task size must be non-negative; was {size}")
    self.size = size
    self.payload = payload
    self.future: concurrent.futures.Future = concurrent.futures.Future()
    self.enqueue_ns = 0
    self._split: _SplitState | None = None
    self._split_index = 0

  @property
  def is_partial(self) -> bool:
    """True for a piece of a task that was split across batches."""
    return self._split is not None

  def _start(self) -> bool:
    """Marks the task running; False if its caller cancelled it already."""
    future = self.future
    if self._split is None:  # Only this task can start its future.
      return future.set_running_or_notify_cancel()
    if future.cancelled():
      return False
    if future.running():  # Another part of the same split task started it.
      return True
    try:
      return future.set_running_or_notify_cancel()
    except RuntimeError:  # Lost a race with another part: it is running.
      return not future.cancelled()

  def _finish(
      self, result: Any = None, error: BaseException | None = None
  ) -> None:
    if self._split is not None:
      self._split.part_done(self._split_index, result, error)
    elif error is not None:
      _set_exception(self.future, error)
    else:
      _set_result(self.future, result)


class _Batch:
  __slots__ = ("tasks", "size", "start")

  def __init__(self):
    self.tasks: list[Task] = []
    self.size = 0
    self.start = 0.0  # time.monotonic() when the first task joined.

  def add(self, task: Task, now: float) -> None:
    if not self.tasks:
      self.start = now
    self.tasks.append(task)
    self.size += task.size


class Queue:
  """One batching queue on a SharedBatchScheduler; see `add_queue`.

  All state is guarded by the scheduler's condition variable, so a queue never
  needs a lock order of its own.
  """

  def __init__(
      self,
      scheduler: SharedBatchScheduler,
      options: batching_options.BatchingOptions,
      process_batch_fn: ProcessBatchFn,
      split_fn: SplitFn | None,
      merge_fn: MergeFn | None,
  ):
    self._scheduler = scheduler
    self.options = options
    self._max_input = options.max_batch_size
    self._max_batch = options.execution_batch_size
    self._timeout_s = options.batch_timeout_micros / 1e6
    self._max_batches = options.max_enqueued_batches
    self._splitting = options.enable_large_batch_splitting
    self._process_batch_fn = process_batch_fn
    self._split_fn = split_fn
    self._merge_fn = merge_fn
    # The last batch is the open one; the ones before it are closed.
    self._batches: collections.deque[_Batch] = collections.deque([_Batch()])
    self._in_flight = 0
    self._closed = False
    self._drained: concurrent.futures.Future = concurrent.futures.Future()

  # Public API.

  def schedule(self, task: Task) -> concurrent.futures.Future:
    """Enqueues `task`; returns its future. Never blocks on batch work.

    Raises INVALID_ARGUMENT for a task larger than max_batch_size, and
    UNAVAILABLE when the queue is full or closed.
    """
    if task.size > self._max_input:
      raise status.invalid_argument(
          f"Task size {task.size} is larger than maximum input batch size "
          f"{self._max_input}"
      )
    scheduler = self._scheduler
    with scheduler._cv:
      if self._closed:
        raise status.unavailable(
            "The batch scheduling queue to which this task was submitted is "
            "closed"
        )
      now = time.monotonic()
      task.enqueue_ns = time.monotonic_ns()
      open_was_empty = not self._batches[-1].tasks
      if self._splitting:
        self._check_capacity_for_split_locked(task)
        self._add_split_locked(task, now)
      else:
        self._add_whole_locked(task, now)
      scheduler.enqueued_rows += task.size
      scheduler._on_task_added_locked(self, now, open_was_empty)
    return task.future

  def num_enqueued_tasks(self) -> int:
    """Tasks (or task parts) waiting for a thread, not counting running ones."""
    with self._scheduler._cv:
      return sum(len(b.tasks) for b in self._batches)

  def close(self) -> concurrent.futures.Future:
    """Stops accepting tasks; returns a future done once all pending ran.

    The open batch is processed without waiting for its timeout. Do not wait
    on the result from inside this queue's own batch function.
    """
    scheduler = self._scheduler
    with scheduler._cv:
      if not self._closed:
        self._closed = True
        scheduler._on_queue_closed_locked(self)
    return self._drained

  def close_and_wait(self, timeout: float | None = None) -> None:
    """`close()`, then blocks until every pending task has finished."""
    self.close().result(timeout)

  @property
  def closed(self) -> bool:
    return self._closed

  # Enqueueing (scheduler lock held).

  def _add_whole_locked(self, task: Task, now: float) -> None:
    open_batch = self._batches[-1]
    if open_batch.size + task.size > self._max_batch:
      # Upstream's (loose) check: the open batch counts as one of the
      # max_enqueued_batches, batches already running do not.
      if len(self._batches) >= self._max_batches:
        raise status.unavailable(
            f"{QUEUE_FULL_MESSAGE}; currently {len(self._batches)} batches "
            f"enqueued and max_enqueued_batches is {self._max_batches}"
        )
      self._batches.append(_Batch())
    self._batches[-1].add(task, now)

  def _capacity_locked(self) -> int:
    new_batches = self._max_batches - len(self._batches)
    return new_batches * self._max_batch + (
        self._max_batch - self._batches[-1].size
    )

  def _check_capacity_for_split_locked(self, task: Task) -> None:
    capacity = self._capacity_locked()
    if task.size > capacity:
      raise status.unavailable(
          f"{QUEUE_FULL_MESSAGE}; task size is {task.size} but scheduling "
          f"capacity is only {capacity} (num_enqueued_batches="
          f"{len(self._batches)}, max_enqueued_batches={self._max_batches}, "
          f"open_batch_size={self._batches[-1].size}, "
          f"max_execution_batch_size={self._max_batch})"
      )

  def _add_split_locked(self, task: Task, now: float) -> None:
    room = self._max_batch - self._batches[-1].size
    if task.size <= room:
      self._batches[-1].add(task, now)
      return
    sizes = [room] if room > 0 else []
    left = task.size - room
    while left > 0:
      sizes.append(min(left, self._max_batch))
      left -= sizes[-1]
    if self._split_fn is None or self._merge_fn is None:
      raise status.internal(
          "Large batch splitting needs split and merge "
          "functions on the queue"
      )
    payloads = self._split_fn(task.payload, sizes)
    if len(payloads) != len(sizes):
      raise status.internal(
          f"Splitting a task into {len(sizes)} parts returned "
          f"{len(payloads)}"
      )
    state = _SplitState(task.future, len(sizes), self._merge_fn)
    for index, (size, payload) in enumerate(zip(sizes, payloads)):
      part = Task(size, payload)
      part.future = task.future
      part.enqueue_ns = task.enqueue_ns
      part._split = state
      part._split_index = index
      if self._batches[-1].size + size > self._max_batch:
        self._batches.append(_Batch())
      self._batches[-1].add(part, now)

  # Dequeueing (scheduler lock held).

  def _deadline_locked(self) -> float | None:
    """When the open batch becomes due by timeout; None if not waiting."""
    if len(self._batches) > 1 or self._closed:
      return None
    open_batch = self._batches[-1]
    if not open_batch.tasks or open_batch.size >= self._max_batch:
      return None
    return open_batch.start + self._timeout_s

  def _ready_locked(self, now: float) -> bool:
    if len(self._batches) > 1:
      return True
    open_batch = self._batches[-1]
    if not open_batch.tasks:
      return False
    return (
        self._closed
        or open_batch.size >= self._max_batch
        or now >= open_batch.start + self._timeout_s
    )

  def _take_locked(self, now: float) -> _Batch | None:
    if not self._ready_locked(now):
      return None
    batch = self._batches.popleft()
    if not self._batches:
      self._batches.append(_Batch())
    self._in_flight += 1
    self._scheduler.enqueued_rows -= batch.size
    return batch

  def _idle_locked(self) -> bool:
    return (
        self._in_flight == 0
        and len(self._batches) == 1
        and not self._batches[0].tasks
    )

  # Processing (no lock held).

  def _process(self, batch: _Batch) -> None:
    tasks = [t for t in batch.tasks if t._start()]
    if not tasks:
      return
    try:
      results = self._process_batch_fn(tasks)
      if len(results) != len(tasks):
        raise status.internal(
            f"Batch function returned {len(results)} results for "
            f"{len(tasks)} tasks"
        )
    except BaseException as exc:  # pylint: disable=broad-except
      for task in tasks:
        task._finish(error=exc)
      return
    for task, result in zip(tasks, results):
      task._finish(result)


class _LifoCondition(threading.Condition):
  """A Condition whose notify() wakes the thread that began waiting last.

  threading.Condition wakes the longest-waiting thread, so under light load
  successive batches hop between batch threads, each waking cold; waking
  the most recently idle one keeps one thread (and its caches) busy and lets
  the others sleep. Same contract otherwise: it relies on CPython's
  Condition keeping its waiters in `_waiters`, oldest first.
  """

  def notify(self, n: int = 1) -> None:
    if not self._is_owned():  # type: ignore[attr-defined]
      raise RuntimeError("cannot notify on un-acquired lock")
    waiters = self._waiters  # type: ignore[attr-defined]
    while waiters and n > 0:
      waiter = waiters.pop()
      try:
        waiter.release()
      except RuntimeError:  # It timed out meanwhile.
        continue
      n -= 1


class SharedBatchScheduler:
  """A fixed pool of batch threads serving any number of queues.

  Threads start with the first queue. `shutdown()` drains every queue and
  stops them; the threads are daemons, so an un-shut-down scheduler does not
  hold the process open.
  """

  def __init__(
      self,
      num_batch_threads: int | None = None,
      thread_pool_name: str = batching_options.DEFAULT_THREAD_POOL_NAME,
  ):
    if num_batch_threads is None:
      num_batch_threads = batching_options.default_num_batch_threads()
    if num_batch_threads < 1:
      raise status.invalid_argument(
          f"num_batch_threads must be positive; was {num_batch_threads}"
      )
    self.num_batch_threads = num_batch_threads
    self.thread_pool_name = thread_pool_name
    # Rows (task sizes) queued in every queue and not yet taken by a batch
    # thread; updated under the lock, read without it (a gauge's value).
    self.enqueued_rows = 0
    self._cv = _LifoCondition(threading.Lock())
    self._queues: list[Queue] = []
    self._next = 0  # Round-robin position in _queues.
    self._threads: list[threading.Thread] = []
    self._stopping = False
    self._idle_threads = 0
    # Deadline the one timed sleeper waits for (None: nobody sleeps timed).
    self._timer_deadline: float | None = None

  @classmethod
  def from_options(
      cls, options: batching_options.BatchingOptions
  ) -> SharedBatchScheduler:
    return cls(options.num_batch_threads, options.thread_pool_name)

  def add_queue(
      self,
      options: batching_options.BatchingOptions,
      process_batch_fn: ProcessBatchFn,
      split_fn: SplitFn | None = None,
      merge_fn: MergeFn | None = None,
  ) -> Queue:
    """Adds a queue; `process_batch_fn` runs its batches on the pool.

    `split_fn` and `merge_fn` are required when
    options.enable_large_batch_splitting is set: they cut a task's payload by
    rows and reassemble the parts' results. `split_fn` runs under the
    scheduler's lock (the cut depends on the open batch), so keep it cheap.
    """
    if options.enable_large_batch_splitting and (
        split_fn is None or merge_fn is None
    ):
      raise status.invalid_argument(
          "split_input_task_func must be specified when "
          "enable_large_batch_splitting is true"
      )
    queue = Queue(self, options, process_batch_fn, split_fn, merge_fn)
    with self._cv:
      if self._stopping:
        raise status.unavailable("The batch scheduler is shut down")
      self._queues.append(queue)
      if not self._threads:
        self._start_threads_locked()
    return queue

  def num_queues(self) -> int:
    with self._cv:
      return len(self._queues)

  def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
    """Closes every queue (pending tasks still run) and stops the threads."""
    with self._cv:
      self._stopping = True
      queues = list(self._queues)
      self._cv.notify_all()
    drained = [q.close() for q in queues]
    if wait:
      concurrent.futures.wait(drained, timeout)
      for thread in list(self._threads):
        thread.join(timeout)

  # Internals; `_locked` methods need self._cv held.

  def _start_threads_locked(self) -> None:
    for index in range(self.num_batch_threads):
      thread = threading.Thread(
          target=self._thread_main,
          name=f"{self.thread_pool_name}_{index}",
          daemon=True,
      )
      self._threads.append(thread)
      thread.start()

  def _on_task_added_locked(
      self, queue: Queue, now: float, open_was_empty: bool
  ) -> None:
    if queue._ready_locked(now):
      self._cv.notify()
      return
    if open_was_empty and self._untimed_deadline_locked():
      self._cv.notify()  # Wake a sleeper to time the new deadline.

  def _on_queue_closed_locked(self, queue: Queue) -> None:
    if queue._idle_locked():
      self._remove_queue_locked(queue)
    else:
      self._cv.notify()  # Its open batch is now due.

  def _remove_queue_locked(self, queue: Queue) -> None:
    if queue not in self._queues:
      return
    index = self._queues.index(queue)
    del self._queues[index]
    if index < self._next:
      self._next -= 1
    if self._next >= len(self._queues):
      self._next = 0
    _set_result(queue._drained, None)
    if self._stopping and not self._queues:
      self._cv.notify_all()  # Let the threads exit.

  def _take_work_locked(self, now: float) -> tuple[Queue, _Batch] | None:
    count = len(self._queues)
    for step in range(count):
      index = (self._next + step) % count
      queue = self._queues[index]
      batch = queue._take_locked(now)
      if batch is not None:
        self._next = (index + 1) % count
        return queue, batch
    return None

  def _earliest_deadline_locked(self) -> float | None:
    deadlines = [
        d for d in (q._deadline_locked() for q in self._queues) if d is not None
    ]
    return min(deadlines) if deadlines else None

  def _untimed_deadline_locked(self) -> bool:
    """True if the earliest open-batch deadline has no sleeper timing it."""
    deadline = self._earliest_deadline_locked()
    return deadline is not None and (
        self._timer_deadline is None or deadline < self._timer_deadline
    )

  def _any_ready_locked(self, now: float) -> bool:
    return any(q._ready_locked(now) for q in self._queues)

  def _next_work(self) -> tuple[Queue, _Batch] | None:
    """Blocks until a batch is due; None when the scheduler has stopped."""
    with self._cv:
      while True:
        now = time.monotonic()
        work = self._take_work_locked(now)
        if work is not None:
          # Pass the baton: more due work, or a deadline nobody is timing.
          if self._idle_threads and (
              self._any_ready_locked(now) or self._untimed_deadline_locked()
          ):
            self._cv.notify()
          return work
        if self._stopping and not self._queues:
          return None
        deadline = self._earliest_deadline_locked()
        self._idle_threads += 1
        try:
          if deadline is not None and (
              self._timer_deadline is None or deadline < self._timer_deadline
          ):
            self._timer_deadline = deadline
            self._cv.wait(max(0.0, deadline - now))
            if self._timer_deadline == deadline:
              self._timer_deadline = None
          else:
            self._cv.wait()
        finally:
          self._idle_threads -= 1

  def _thread_main(self) -> None:
    while True:
      work = self._next_work()
      if work is None:
        return
      queue, batch = work
      try:
        queue._process(batch)
      finally:
        with self._cv:
          queue._in_flight -= 1
          if queue.closed and queue._idle_locked():
            self._remove_queue_locked(queue)
