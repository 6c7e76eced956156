r"""In-process throughput of batched vs direct runs of an MNIST-sized model.

Exports a random softmax regression (784 floats -> 10 scores, like the MNIST
tutorial model) to a temporary directory, then measures calls/s for:
  direct-1    bundle.run from one thread (the unbatched baseline)
  direct-N    bundle.run from N threads (unbatched, concurrent)
  batched     BatchingBundle.run from N threads, per max_batch_size/timeout
  async       N asyncio tasks awaiting BatchingBundle.submit on one thread
Each call is one row (one image).

  bazel run -c opt //tensorflow_serving/tools/benchmark:batching_benchmark -- \
      --concurrency=32 --seconds=3 --max_batch_sizes=32,64,128 \
      --timeouts_micros=0,1000
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import batching_session
from tensorflow_serving.batching import shared_batch_scheduler
from tensorflow_serving.servables.tensorflow import saved_model_bundle

flags.DEFINE_integer("concurrency", 32, "Concurrent submitters.")
flags.DEFINE_float("seconds", 3.0, "Measuring time per configuration.")
flags.DEFINE_list("max_batch_sizes", ["32", "64", "128"], "Sizes to try.")
flags.DEFINE_list("timeouts_micros", ["0", "1000"], "batch_timeout_micros.")
flags.DEFINE_integer("num_batch_threads", 0, "0: the number of cores.")
FLAGS = flags.FLAGS


def export_mnist_sized_model(export_dir: str) -> str:
  graph = tf.Graph()
  with graph.as_default():
    rng = np.random.default_rng(0)
    images = tf.compat.v1.placeholder(tf.float32, [None, 784], name="images")
    w = tf.constant(rng.normal(size=(784, 10)).astype(np.float32) * 0.01)
    b = tf.constant(np.zeros(10, np.float32))
    scores = tf.nn.softmax(tf.matmul(images, w) + b, name="scores")
    sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
        {"images": images}, {"scores": scores}
    )
    with tf.compat.v1.Session(graph=graph) as session:
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map={"serving_default": sig}
      )
      builder.save()
  return export_dir


class _KeepOpen:
  """Shares one loaded bundle across configurations: close() is a no-op."""

  def __init__(self, bundle):
    self._bundle = bundle

  def __getattr__(self, name):
    return getattr(self._bundle, name)

  def close(self) -> None:
    pass


class BatchSizes(batching_session.BatchingMetrics):

  def __init__(self):
    self.batches = 0
    self.rows = 0

  def record_processed_batch_size(self, size: int) -> None:
    self.batches += 1
    self.rows += size


def _threads(run_once, concurrency: int, seconds: float) -> float:
  """Calls/s of `run_once(i)` looped by `concurrency` threads."""
  counts = [0] * concurrency
  stop = threading.Event()
  start_barrier = threading.Barrier(concurrency + 1)

  def loop(index):
    start_barrier.wait()
    n = 0
    while not stop.is_set():
      run_once(index)
      n += 1
    counts[index] = n

  threads = [
      threading.Thread(target=loop, args=(i,)) for i in range(concurrency)
  ]
  for thread in threads:
    thread.start()
  start_barrier.wait()
  start = time.perf_counter()
  time.sleep(seconds)
  stop.set()
  for thread in threads:
    thread.join()
  return sum(counts) / (time.perf_counter() - start)


def _async(bundle, sig, inputs, concurrency: int, seconds: float) -> float:

  async def main():
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(index):
      nonlocal count
      while time.perf_counter() < deadline:
        await asyncio.wrap_future(bundle.submit(sig, inputs[index]))
        count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return count / (time.perf_counter() - start)

  return asyncio.run(main())


def main(argv):
  del argv
  n = FLAGS.concurrency
  tmp = tempfile.mkdtemp()
  bundle = saved_model_bundle.load_saved_model_bundle(
      export_mnist_sized_model(os.path.join(tmp, "1")), ["serve"]
  )
  sig = bundle.signatures["serving_default"]
  rng = np.random.default_rng(1)
  inputs = [{"images": rng.random((1, 784), np.float32)} for _ in range(n)]
  for _ in range(200):  # Warm up the callable.
    bundle.run(sig, inputs[0])
  threads = (
      FLAGS.num_batch_threads or batching_options.default_num_batch_threads()
  )
  print(
      f"cores={os.cpu_count()} num_batch_threads={threads} "
      f"concurrency={n} seconds={FLAGS.seconds}"
  )
  rate = _threads(lambda i: bundle.run(sig, inputs[0]), 1, FLAGS.seconds)
  print(f"direct-1            {rate:9.0f} calls/s")
  rate = _threads(lambda i: bundle.run(sig, inputs[i]), n, FLAGS.seconds)
  print(f"direct-{n:<3}         {rate:9.0f} calls/s")
  scheduler = shared_batch_scheduler.SharedBatchScheduler(threads)
  for size in map(int, FLAGS.max_batch_sizes):
    for timeout in map(int, FLAGS.timeouts_micros):
      for mode in ("threads", "async"):
        metrics = BatchSizes()
        options = batching_options.BatchingOptions(
            max_batch_size=size,
            batch_timeout_micros=timeout,
            num_batch_threads=threads,
            max_enqueued_batches=1000,
        )
        batched = batching_session.BatchingBundle(
            _KeepOpen(bundle), scheduler, options, metrics
        )
        batched.run(sig, inputs[0])
        if mode == "threads":
          rate = _threads(
              lambda i: batched.run(sig, inputs[i]), n, FLAGS.seconds  # noqa: B023 (run before the loop moves on)
          )
        else:
          rate = _async(batched, sig, inputs, n, FLAGS.seconds)
        mean = metrics.rows / max(1, metrics.batches)
        print(
            f"batched {mode:<7} max_batch_size={size:<4} "
            f"timeout_us={timeout:<5} {rate:9.0f} calls/s  "
            f"mean batch {mean:5.1f}"
        )
        batched.close()
  scheduler.shutdown()
  bundle.close()


if __name__ == "__main__":
  app.run(main)
