"""SharedBatchScheduler: batch formation, timeouts, capacity, splitting,
round-robin and draining. Batch composition is made deterministic by holding
the pool's only thread on a gate while tasks accumulate; every wait is
bounded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

from absl.testing import absltest

from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import shared_batch_scheduler as sbs
from tensorflow_serving.util import status

WAIT_S = 10.0  # Upper bound for anything that should happen promptly.


def _options(**kwargs) -> batching_options.BatchingOptions:
  return batching_options.BatchingOptions(**kwargs).validated()


class Recorder:
  """A batch function that logs each batch's payloads and echoes them."""

  def __init__(self, name: str = "", gate: threading.Event | None = None):
    self.name = name
    self.gate = gate
    self.started = threading.Event()
    self.batches: list[list] = []
    self.lock = threading.Lock()

  def __call__(self, tasks: list[sbs.Task]) -> list:
    payloads = [t.payload for t in tasks]
    with self.lock:
      self.batches.append(payloads)
    self.started.set()
    if self.gate is not None:
      assert self.gate.wait(WAIT_S)
    return payloads

  def sizes(self) -> list[int]:
    with self.lock:
      return [len(b) for b in self.batches]


def _split(payload: list, sizes):
  parts, offset = [], 0
  for size in sizes:
    parts.append(payload[offset : offset + size])
    offset += size
  return parts


def _merge(results: list) -> list:
  return [row for part in results for row in part]


class RowRecorder(Recorder):
  """For list payloads (one element per row): logs batch row counts."""

  def __call__(self, tasks: list[sbs.Task]) -> list:
    with self.lock:
      self.batches.append([row for t in tasks for row in t.payload])
    return [[row * 10 for row in t.payload] for t in tasks]


class SharedBatchSchedulerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.scheduler = sbs.SharedBatchScheduler(
        num_batch_threads=1, thread_pool_name="test"
    )
    self.addCleanup(self.scheduler.shutdown, True, WAIT_S)

  def hold_thread(self) -> threading.Event:
    """Occupies the only batch thread until the returned event is set."""
    gate = threading.Event()
    self.addCleanup(gate.set)
    blocker = Recorder("blocker", gate)
    queue = self.scheduler.add_queue(_options(max_batch_size=1), blocker)
    queue.schedule(sbs.Task(1, "block"))
    self.assertTrue(blocker.started.wait(WAIT_S))
    return gate

  def test_batches_form_up_to_max_size(self):
    recorder = Recorder()
    queue = self.scheduler.add_queue(
        _options(max_batch_size=4, batch_timeout_micros=60_000_000), recorder
    )
    futures = [queue.schedule(sbs.Task(1, i)) for i in range(10)]
    # Full batches run at once; the two left over wait for the timeout.
    self.assertEqual([f.result(WAIT_S) for f in futures[:8]], list(range(8)))
    self.assertEqual(recorder.batches, [[0, 1, 2, 3], [4, 5, 6, 7]])
    self.assertFalse(futures[8].done())
    self.assertEqual(queue.num_enqueued_tasks(), 2)
    queue.close_and_wait(WAIT_S)  # Closing runs the open batch right away.
    self.assertEqual(recorder.batches[-1], [8, 9])
    self.assertEqual(futures[9].result(0), 9)

  def test_enqueued_rows_count_what_waits_for_a_thread(self):
    gate = self.hold_thread()
    recorder = Recorder()
    queue = self.scheduler.add_queue(
        _options(max_batch_size=4, batch_timeout_micros=0), recorder
    )
    futures = [queue.schedule(sbs.Task(size, size)) for size in (1, 3, 2)]
    self.assertEqual(self.scheduler.enqueued_rows, 6)
    gate.set()
    self.assertEqual([f.result(WAIT_S) for f in futures], [1, 3, 2])
    self.assertEqual(self.scheduler.enqueued_rows, 0)

  def test_task_sizes_count_rows(self):
    recorder = Recorder()
    queue = self.scheduler.add_queue(
        _options(max_batch_size=5, batch_timeout_micros=60_000_000), recorder
    )
    futures = [queue.schedule(sbs.Task(size, size)) for size in (2, 2, 2, 3)]
    # 2+2 fits in 5, the third 2 does not: it opens the next batch, which
    # 2+3 then fills exactly. Neither batch waits for the timeout.
    self.assertEqual([f.result(WAIT_S) for f in futures], [2, 2, 2, 3])
    self.assertEqual(recorder.batches, [[2, 2], [2, 3]])

  def test_timeout_closes_underfull_batch(self):
    recorder = Recorder()
    queue = self.scheduler.add_queue(
        _options(max_batch_size=100, batch_timeout_micros=100_000), recorder
    )
    start = time.monotonic()
    futures = [queue.schedule(sbs.Task(1, i)) for i in range(3)]
    self.assertEqual([f.result(WAIT_S) for f in futures], [0, 1, 2])
    self.assertGreaterEqual(time.monotonic() - start, 0.09)
    self.assertEqual(recorder.batches, [[0, 1, 2]])

  def test_timeout_zero_processes_immediately(self):
    recorder = Recorder()
    queue = self.scheduler.add_queue(_options(max_batch_size=100), recorder)
    self.assertEqual(queue.schedule(sbs.Task(1, "a")).result(WAIT_S), "a")
    self.assertEqual(recorder.batches, [["a"]])

  def test_timeout_zero_batches_what_arrived_while_busy(self):
    gate = self.hold_thread()
    recorder = Recorder()
    queue = self.scheduler.add_queue(_options(max_batch_size=100), recorder)
    futures = [queue.schedule(sbs.Task(1, i)) for i in range(5)]
    gate.set()
    self.assertEqual([f.result(WAIT_S) for f in futures], list(range(5)))
    self.assertEqual(recorder.batches, [[0, 1, 2, 3, 4]])

  def test_queue_full_is_unavailable(self):
    gate = self.hold_thread()
    queue = self.scheduler.add_queue(
        _options(max_batch_size=2, max_enqueued_batches=2), Recorder()
    )
    futures = [queue.schedule(sbs.Task(1, i)) for i in range(4)]
    with self.assertRaises(status.ServingError) as ctx:
      queue.schedule(sbs.Task(1, 4))
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)
    self.assertEqual(
        ctx.exception.message,
        "The batch scheduling queue to which this task was submitted is "
        "full; currently 2 batches enqueued and max_enqueued_batches is 2",
    )
    self.assertTrue(ctx.exception.message.startswith(sbs.QUEUE_FULL_MESSAGE))
    gate.set()
    self.assertEqual([f.result(WAIT_S) for f in futures], [0, 1, 2, 3])
    # Capacity is back once the batches ran.
    self.assertEqual(queue.schedule(sbs.Task(1, 5)).result(WAIT_S), 5)

  def test_oversize_task_is_invalid_argument(self):
    queue = self.scheduler.add_queue(_options(max_batch_size=4), Recorder())
    with self.assertRaises(status.ServingError) as ctx:
      queue.schedule(sbs.Task(5, None))
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        ctx.exception.message,
        "Task size 5 is larger than maximum input batch size 4",
    )

  def test_splitting_splits_and_reassembles(self):
    recorder = RowRecorder()
    queue = self.scheduler.add_queue(
        _options(
            max_batch_size=10,
            enable_large_batch_splitting=True,
            max_execution_batch_size=4,
            batch_timeout_micros=60_000_000,
        ),
        recorder,
        split_fn=_split,
        merge_fn=_merge,
    )
    small = queue.schedule(sbs.Task(1, [100]))
    big = queue.schedule(sbs.Task(10, list(range(10))))
    # 3 rows top up the open batch, then 4, then 3 in a new open batch.
    self.assertEqual(small.result(WAIT_S), [1000])
    queue.close_and_wait(WAIT_S)
    self.assertEqual(big.result(0), [r * 10 for r in range(10)])
    self.assertEqual(
        recorder.batches, [[100, 0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    )
    with self.assertRaises(status.ServingError) as ctx:
      sbs.SharedBatchScheduler(1).add_queue(
          _options(
              max_batch_size=10,
              enable_large_batch_splitting=True,
              max_execution_batch_size=4,
          ),
          recorder,
          split_fn=_split,
          merge_fn=_merge,
      ).schedule(sbs.Task(11, [0] * 11))
    self.assertEqual(
        ctx.exception.message,
        "Task size 11 is larger than maximum input batch size 10",
    )

  def test_splitting_capacity(self):
    gate = self.hold_thread()
    queue = self.scheduler.add_queue(
        _options(
            max_batch_size=10,
            enable_large_batch_splitting=True,
            max_execution_batch_size=4,
            max_enqueued_batches=2,
        ),
        RowRecorder(),
        split_fn=_split,
        merge_fn=_merge,
    )
    first = queue.schedule(sbs.Task(6, list(range(6))))
    with self.assertRaises(status.ServingError) as ctx:
      queue.schedule(sbs.Task(3, [0, 1, 2]))
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)
    self.assertEqual(
        ctx.exception.message,
        "The batch scheduling queue to which this task was submitted is "
        "full; task size is 3 but scheduling capacity is only 2 "
        "(num_enqueued_batches=2, max_enqueued_batches=2, open_batch_size=2, "
        "max_execution_batch_size=4)",
    )
    second = queue.schedule(sbs.Task(2, [6, 7]))
    gate.set()
    self.assertEqual(first.result(WAIT_S), [r * 10 for r in range(6)])
    self.assertEqual(second.result(WAIT_S), [60, 70])

  def test_split_task_fails_if_any_part_fails(self):

    def process(tasks):
      if any(-1 in t.payload for t in tasks):
        raise status.internal("bad rows")
      return [t.payload for t in tasks]

    queue = self.scheduler.add_queue(
        _options(
            max_batch_size=10,
            enable_large_batch_splitting=True,
            max_execution_batch_size=2,
        ),
        process,
        split_fn=_split,
        merge_fn=_merge,
    )
    future = queue.schedule(sbs.Task(5, [0, 1, -1, 3, 4]))
    with self.assertRaisesRegex(status.ServingError, "bad rows"):
      future.result(WAIT_S)

  def test_round_robin_across_queues(self):
    gate = self.hold_thread()
    order = []

    def process_for(name):

      def process(tasks):
        order.append(name)
        return [None] * len(tasks)

      return process

    queues = [
        self.scheduler.add_queue(_options(max_batch_size=1), process_for(name))
        for name in "abc"
    ]
    futures = []
    for queue in queues:  # Two full batches in each queue, a's first.
      futures += [queue.schedule(sbs.Task(1)) for _ in range(2)]
    gate.set()
    concurrent.futures.wait(futures, WAIT_S)
    self.assertTrue(all(f.done() for f in futures))
    self.assertEqual("".join(order), "abcabc")

  def test_close_drains_pending_and_in_flight_tasks(self):
    gate = threading.Event()
    self.addCleanup(gate.set)
    recorder = Recorder(gate=gate)
    queue = self.scheduler.add_queue(
        _options(max_batch_size=2, batch_timeout_micros=60_000_000), recorder
    )
    running = [queue.schedule(sbs.Task(1, i)) for i in range(2)]
    self.assertTrue(recorder.started.wait(WAIT_S))
    pending = [queue.schedule(sbs.Task(1, 2))]
    self.assertEqual(self.scheduler.num_queues(), 1)
    drained = queue.close()
    with self.assertRaises(status.ServingError) as ctx:
      queue.schedule(sbs.Task(1, 3))
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)
    self.assertFalse(drained.done())  # A batch is still running.
    gate.set()
    drained.result(WAIT_S)
    self.assertEqual([f.result(0) for f in running + pending], [0, 1, 2])
    self.assertEqual(self.scheduler.num_queues(), 0)

  def test_close_idle_queue(self):
    queue = self.scheduler.add_queue(_options(), Recorder())
    queue.close_and_wait(WAIT_S)
    self.assertEqual(self.scheduler.num_queues(), 0)

  def test_failed_batch_fails_its_tasks_only(self):

    def process(tasks):
      if "poison" in [t.payload for t in tasks]:
        raise status.invalid_argument("poisoned batch")
      return [t.payload for t in tasks]

    gate = self.hold_thread()
    queue = self.scheduler.add_queue(_options(max_batch_size=2), process)
    bad = [queue.schedule(sbs.Task(1, p)) for p in ("ok", "poison")]
    good = queue.schedule(sbs.Task(1, "fine"))
    gate.set()
    for future in bad:
      with self.assertRaises(status.ServingError) as ctx:
        future.result(WAIT_S)
      self.assertEqual(ctx.exception.message, "poisoned batch")
    self.assertEqual(good.result(WAIT_S), "fine")

  def test_wrong_result_count_is_internal(self):
    queue = self.scheduler.add_queue(_options(), lambda tasks: [])
    with self.assertRaises(status.ServingError) as ctx:
      queue.schedule(sbs.Task(1)).result(WAIT_S)
    self.assertEqual(ctx.exception.code, status.Code.INTERNAL)

  def test_cancelled_tasks_are_skipped(self):
    gate = self.hold_thread()
    recorder = Recorder()
    queue = self.scheduler.add_queue(_options(), recorder)
    cancelled = queue.schedule(sbs.Task(1, "cancelled"))
    kept = queue.schedule(sbs.Task(1, "kept"))
    self.assertTrue(cancelled.cancel())
    gate.set()
    self.assertEqual(kept.result(WAIT_S), "kept")
    self.assertEqual(recorder.batches, [["kept"]])

  def test_asyncio_callers_await_the_future(self):
    queue = self.scheduler.add_queue(_options(), Recorder())

    async def main():
      futures = [
          asyncio.wrap_future(queue.schedule(sbs.Task(1, i))) for i in range(20)
      ]
      return await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)

    self.assertEqual(asyncio.run(main()), list(range(20)))

  def test_shutdown_drains_and_stops_threads(self):
    scheduler = sbs.SharedBatchScheduler(num_batch_threads=3)
    queue = scheduler.add_queue(
        _options(batch_timeout_micros=60_000_000), Recorder()
    )
    future = queue.schedule(sbs.Task(1, "x"))
    scheduler.shutdown(wait=True, timeout=WAIT_S)
    self.assertEqual(future.result(0), "x")
    self.assertFalse(any(t.is_alive() for t in scheduler._threads))
    with self.assertRaises(status.ServingError):
      scheduler.add_queue(_options(), Recorder())

  def test_threads_start_with_the_first_queue(self):
    scheduler = sbs.SharedBatchScheduler(
        num_batch_threads=2, thread_pool_name="lazy"
    )
    self.assertEqual(scheduler._threads, [])
    scheduler.add_queue(_options(), Recorder())
    self.assertEqual([t.name for t in scheduler._threads], ["lazy_0", "lazy_1"])
    scheduler.shutdown(timeout=WAIT_S)

  def test_many_threads_and_queues_return_each_callers_result(self):
    scheduler = sbs.SharedBatchScheduler(num_batch_threads=4)
    self.addCleanup(scheduler.shutdown, True, WAIT_S)
    queues = [
        scheduler.add_queue(
            _options(
                max_batch_size=8,
                batch_timeout_micros=timeout,
                max_enqueued_batches=1000,
            ),
            Recorder(),
        )
        for timeout in (0, 500, 2000)
    ]
    errors = []

    def client(index):
      for i in range(100):
        payload = (index, i)
        queue = queues[(index + i) % len(queues)]
        got = queue.schedule(sbs.Task(1, payload)).result(WAIT_S)
        if got != payload:
          errors.append((payload, got))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(WAIT_S * 3)
    self.assertFalse(any(t.is_alive() for t in threads))
    self.assertEqual(errors, [])

  def test_invalid_scheduler_and_queue_options(self):
    with self.assertRaises(status.ServingError) as ctx:
      sbs.SharedBatchScheduler(num_batch_threads=0)
    self.assertEqual(
        ctx.exception.message, "num_batch_threads must be positive; was 0"
    )
    with self.assertRaises(status.ServingError):
      self.scheduler.add_queue(
          _options(enable_large_batch_splitting=True), Recorder()
      )


if __name__ == "__main__":
  absltest.main()
