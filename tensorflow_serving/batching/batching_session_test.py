"""BatchingBundle over a fake bundle and over a real SavedModel.

The batching pool has one thread; tests that need a particular batch hold it
on a "gate" signature of the fake bundle while requests pile up in another
queue, so batch composition does not depend on timing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import tempfile
import threading

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import batching_session
from tensorflow_serving.batching import shared_batch_scheduler
from tensorflow_serving.core import servable_id
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import saved_model_loader
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow import warmup
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import status

WAIT_S = 10.0


def _options(**kwargs) -> batching_options.BatchingOptions:
  kwargs.setdefault("num_batch_threads", 1)
  return batching_options.BatchingOptions(**kwargs).validated()


@dataclasses.dataclass(frozen=True)
class FakeSig:
  key: str
  inputs: tuple[str, ...]
  outputs: tuple[str, ...]


class FakeBundle:
  """Signature "f": y = 2x + offset and z = x (identity), per row.

  "gate" blocks until `gate` is set. A batch whose x contains -1 fails.
  Records every batch it runs.
  """

  def __init__(self):
    self.signatures = {
        "f": FakeSig("f", ("offset", "x"), ("y", "z")),
        "gate": FakeSig("gate", ("x",), ("y",)),
        "bad_output": FakeSig("bad_output", ("x",), ("y", "scalar")),
    }
    self.export_dir = "/fake/1"
    self.gate = threading.Event()
    self.gate_started = threading.Event()
    self.runs: list[dict[str, np.ndarray]] = []
    self.closed = False

  def validate(self, sig, inputs, output_filter=()):
    if set(inputs) != set(sig.inputs):
      raise status.invalid_argument(f"bad aliases {sorted(inputs)}")
    for value in inputs.values():
      if value.dtype != np.float32:
        raise status.invalid_argument("want float")
    for alias in output_filter:
      if alias not in sig.outputs:
        raise status.invalid_argument(f"no output {alias}")
    return tuple(output_filter) or sig.outputs

  def run_validated(self, sig, inputs, output_aliases):
    self.runs.append(dict(inputs))
    if sig.key == "gate":
      self.gate_started.set()
      assert self.gate.wait(WAIT_S)
      return {"y": inputs["x"]}
    x = inputs["x"]
    if (x == -1).any():
      raise status.invalid_argument("x must not be -1")
    if sig.key == "bad_output":
      outputs = {"y": x[:1], "scalar": np.float32(1)}
    else:
      outputs = {"y": 2 * x + inputs["offset"], "z": x}
    return {a: outputs[a] for a in output_aliases}

  def run(self, sig, inputs, output_filter=()):
    return self.run_validated(
        sig, inputs, self.validate(sig, inputs, output_filter)
    )

  def close(self):
    self.closed = True


class RecordingMetrics(batching_session.BatchingMetrics):

  def __init__(self):
    self.events = []

  def record_queuing_latency(self, micros):
    self.events.append(("queuing_latency", micros))

  def record_input_batch_size(self, size):
    self.events.append(("input_batch_size", size))

  def record_processed_batch_size(self, size):
    self.events.append(("processed_batch_size", size))

  def record_padding_size(self, padding, processed_batch_size):
    self.events.append(("padding_size", padding, processed_batch_size))

  def record_wrapped_run_count(self, count):
    self.events.append(("wrapped_run_count", count))


def _f32(*values) -> np.ndarray:
  return np.array(values, np.float32)


class FakeBundleTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.scheduler = shared_batch_scheduler.SharedBatchScheduler(1)
    self.addCleanup(self.scheduler.shutdown, True, WAIT_S)
    self.inner = FakeBundle()
    self.addCleanup(self.inner.gate.set)
    self.metrics = RecordingMetrics()

  def wrap(self, **kwargs) -> batching_session.BatchingBundle:
    return batching_session.BatchingBundle(
        self.inner, self.scheduler, _options(**kwargs), self.metrics
    )

  def hold(self, bundle) -> concurrent.futures.Future:
    """Occupies the pool's only thread until self.inner.gate is set."""
    future = bundle.submit(self.inner.signatures["gate"], {"x": _f32(0)})
    self.assertTrue(self.inner.gate_started.wait(WAIT_S))
    self.inner.runs.clear()
    return future

  def submit(self, bundle, x, offset=None, output_filter=()):
    x = np.asarray(x, np.float32)
    if offset is None:
      offset = np.zeros_like(x)
    return bundle.submit(
        self.inner.signatures["f"],
        {"x": x, "offset": np.asarray(offset, np.float32)},
        output_filter,
    )

  def test_interface_passthrough(self):
    bundle = self.wrap()
    self.assertIs(bundle.signatures, self.inner.signatures)
    self.assertEqual(bundle.export_dir, "/fake/1")
    self.assertIs(bundle.inner, self.inner)
    out = bundle.run(
        self.inner.signatures["f"], {"x": _f32(1, 2), "offset": _f32(10, 20)}
    )
    np.testing.assert_array_equal(out["y"], [12, 24])
    np.testing.assert_array_equal(out["z"], [1, 2])
    bundle.close()
    self.assertTrue(self.inner.closed)

  def test_concurrent_requests_get_their_own_results(self):
    scheduler = shared_batch_scheduler.SharedBatchScheduler(4)
    self.addCleanup(scheduler.shutdown, True, WAIT_S)
    bundle = batching_session.BatchingBundle(
        self.inner,
        scheduler,
        _options(
            max_batch_size=32,
            batch_timeout_micros=1000,
            max_enqueued_batches=1000,
        ),
        self.metrics,
    )
    sig = self.inner.signatures["f"]
    mismatches = []

    def client(n):
      for i in range(20):
        rows = 1 + (n + i) % 3
        x = np.arange(rows, dtype=np.float32) + 1000 * n + i
        offset = np.full(rows, n, np.float32)
        out = bundle.run(sig, {"x": x, "offset": offset})
        if not (
            np.array_equal(out["y"], 2 * x + n) and np.array_equal(out["z"], x)
        ):
          mismatches.append((n, i))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(WAIT_S * 3)
    self.assertFalse(any(t.is_alive() for t in threads))
    self.assertEqual(mismatches, [])
    # Requests really were batched together.
    self.assertLess(len(self.inner.runs), 64 * 20)

  def test_requests_join_one_batch(self):
    bundle = self.wrap()
    gate = self.hold(bundle)
    futures = [
        self.submit(bundle, [i, i + 0.5], offset=[i, i]) for i in range(5)
    ]
    self.inner.gate.set()
    gate.result(WAIT_S)
    for i, future in enumerate(futures):
      out = future.result(WAIT_S)
      np.testing.assert_array_equal(out["y"], [3 * i, 3 * i + 1])
      np.testing.assert_array_equal(out["z"], [i, i + 0.5])
    self.assertLen(self.inner.runs, 1)
    self.assertEqual(self.inner.runs[0]["x"].shape, (10,))

  def test_padding_to_allowed_batch_sizes(self):
    bundle = self.wrap(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    gate = self.hold(bundle)
    first = self.submit(bundle, [1, 2])
    last = self.submit(bundle, [7])
    self.inner.gate.set()
    gate.result(WAIT_S)
    np.testing.assert_array_equal(first.result(WAIT_S)["y"], [2, 4])
    np.testing.assert_array_equal(last.result(WAIT_S)["y"], [14])
    # 3 rows ran as 4: the padding repeats the last task's first row.
    np.testing.assert_array_equal(self.inner.runs[0]["x"], [1, 2, 7, 7])
    self.assertIn(("processed_batch_size", 4), self.metrics.events)
    self.assertIn(("padding_size", 1, 4), self.metrics.events)

  def test_pad_variable_length_inputs(self):
    bundle = self.wrap(pad_variable_length_inputs=True)
    gate = self.hold(bundle)
    short = self.submit(bundle, [[5, 6]], offset=[[0, 0]])
    long = self.submit(bundle, [[1, 2, 3]], offset=[[0, 0, 0]])
    self.inner.gate.set()
    gate.result(WAIT_S)
    # Padded with each tensor's own first element.
    np.testing.assert_array_equal(short.result(WAIT_S)["z"], [[5, 6, 5]])
    np.testing.assert_array_equal(long.result(WAIT_S)["z"], [[1, 2, 3]])

  def test_shape_mismatch_without_padding(self):
    bundle = self.wrap()
    gate = self.hold(bundle)
    futures = [
        self.submit(bundle, [[5, 6]], offset=[[0, 0]]),
        self.submit(bundle, [[1, 2, 3]], offset=[[0, 0, 0]]),
    ]
    self.inner.gate.set()
    gate.result(WAIT_S)
    for future in futures:
      with self.assertRaises(status.ServingError) as ctx:
        future.result(WAIT_S)
      self.assertEqual(ctx.exception.code, status.Code.FAILED_PRECONDITION)
      self.assertEqual(
          ctx.exception.message,
          "Tensors with name 'offset' from different tasks have different "
          "shapes and padding is turned off. Set pad_variable_length_inputs "
          "to true, or ensure that all tensors with the same name have equal "
          "dimensions starting with the first dim.",
      )

  def test_failing_batch_fails_all_its_tasks_then_recovers(self):
    bundle = self.wrap()
    gate = self.hold(bundle)
    futures = [self.submit(bundle, [1]), self.submit(bundle, [-1])]
    self.inner.gate.set()
    gate.result(WAIT_S)
    for future in futures:
      with self.assertRaisesRegex(status.ServingError, "x must not be -1"):
        future.result(WAIT_S)
    out = self.submit(bundle, [3]).result(WAIT_S)
    np.testing.assert_array_equal(out["y"], [6])

  def test_bad_requests_rejected_before_enqueue(self):
    bundle = self.wrap(max_batch_size=4)
    sig = self.inner.signatures["f"]
    cases = {
        "bad aliases ['x']": {"x": _f32(1)},
        "want float": {"x": _f32(1), "offset": np.array([1], np.int32)},
        "Batching Run() input tensors must have equal 0th-dimension size": {
            "x": _f32(1, 2),
            "offset": _f32(1),
        },
        "Batching Run() input tensors must have at least one dimension": {
            "x": np.float32(1),
            "offset": np.float32(1),
        },
        "Task size 5 is larger than maximum input batch size 4": {
            "x": _f32(*range(5)),
            "offset": _f32(*range(5)),
        },
    }
    for message, inputs in cases.items():
      with self.assertRaises(status.ServingError) as ctx:
        bundle.submit(sig, inputs)
      self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
      self.assertEqual(ctx.exception.message, message)
    with self.assertRaisesRegex(status.ServingError, "no output w"):
      bundle.submit(sig, {"x": _f32(1), "offset": _f32(1)}, ("w",))
    self.assertEqual(self.inner.runs, [])

  def test_output_rows_must_match_batch(self):
    bundle = self.wrap()
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(self.inner.signatures["bad_output"], {"x": _f32(1, 2)}, ("y",))
    self.assertEqual(ctx.exception.code, status.Code.INTERNAL)
    self.assertStartsWith(
        ctx.exception.message,
        "Batched output tensor's 0th dimension does not equal the sum of the "
        "0th dimension sizes of the input tensors (output 'y' has 1 rows; the "
        "batch has 2)",
    )
    with self.assertRaisesRegex(
        status.ServingError, "Batched output tensor has 0 dimensions"
    ):
      bundle.run(
          self.inner.signatures["bad_output"], {"x": _f32(1)}, ("scalar",)
      )

  def test_large_batch_splitting(self):
    bundle = self.wrap(
        max_batch_size=10,
        enable_large_batch_splitting=True,
        max_execution_batch_size=4,
    )
    x = np.arange(10, dtype=np.float32)
    out = self.submit(bundle, x, offset=x).result(WAIT_S)
    np.testing.assert_array_equal(out["y"], 3 * x)
    np.testing.assert_array_equal(out["z"], x)
    self.assertEqual([len(r["x"]) for r in self.inner.runs], [4, 4, 2])

  def test_queue_per_signature_and_alias_sets(self):
    bundle = self.wrap()
    out = self.submit(bundle, [1], output_filter=("z", "y")).result(WAIT_S)
    self.assertEqual(list(out), ["z", "y"])  # The caller's order.
    self.submit(bundle, [1], output_filter=("y", "z")).result(WAIT_S)
    self.assertLen(bundle._queues, 1)  # Same set of outputs: same queue.
    self.submit(bundle, [1], output_filter=("y",)).result(WAIT_S)
    self.assertLen(bundle._queues, 2)

  def test_metrics(self):
    bundle = self.wrap()
    self.submit(bundle, [1, 2, 3]).result(WAIT_S)
    kinds = [e[0] for e in self.metrics.events]
    self.assertEqual(
        kinds,
        [
            "input_batch_size",
            "queuing_latency",
            "processed_batch_size",
            "padding_size",
            "wrapped_run_count",
        ],
    )
    self.assertEqual(self.metrics.events[0], ("input_batch_size", 3))
    self.assertGreaterEqual(self.metrics.events[1][1], 0)
    self.assertEqual(
        self.metrics.events[2:],
        [
            ("processed_batch_size", 3),
            ("padding_size", 0, 3),
            ("wrapped_run_count", 1),
        ],
    )

  def test_close_drains_queued_requests(self):
    bundle = self.wrap(batch_timeout_micros=60_000_000)
    future = self.submit(bundle, [4])
    bundle.close()
    np.testing.assert_array_equal(future.result(0)["y"], [8])
    self.assertTrue(self.inner.closed)
    self.assertEqual(self.scheduler.num_queues(), 0)
    with self.assertRaises(status.ServingError) as ctx:
      self.submit(bundle, [1])
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)

  def test_asyncio(self):
    bundle = self.wrap()

    async def main():
      futures = [
          asyncio.wrap_future(self.submit(bundle, [i])) for i in range(10)
      ]
      return await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)

    results = asyncio.run(main())
    self.assertEqual(
        [float(r["y"][0]) for r in results], [2.0 * i for i in range(10)]
    )


class SavedModelTest(absltest.TestCase):
  """Against half_plus_two: y = 0.5 * x + 2, x float [-1]."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    cls.export_dir = half_plus_two.export_half_plus_two_tf1(
        os.path.join(cls.tmp, "1")
    )

  def setUp(self):
    super().setUp()
    self.scheduler = shared_batch_scheduler.SharedBatchScheduler(2)
    self.addCleanup(self.scheduler.shutdown, True, WAIT_S)
    self.inner = saved_model_bundle.load_saved_model_bundle(
        self.export_dir, ["serve"]
    )

  def wrap(self, metrics=None, **kwargs) -> batching_session.BatchingBundle:
    bundle = batching_session.BatchingBundle(
        self.inner, self.scheduler, _options(**kwargs), metrics
    )
    self.addCleanup(bundle.close)
    return bundle

  def test_concurrent_requests_get_their_own_results(self):
    bundle = self.wrap(
        max_batch_size=16, batch_timeout_micros=2000, max_enqueued_batches=1000
    )
    sig = bundle.signatures["serving_default"]
    mismatches = []
    metrics_lock = threading.Lock()
    barrier = threading.Barrier(64)

    def client(n):
      barrier.wait(WAIT_S)
      for i in range(10):
        x = np.array([n, i, n * 100 + i][: 1 + (n + i) % 3], np.float32)
        y = bundle.run(sig, {"x": x})["y"]
        if not np.allclose(y, 0.5 * x + 2):
          with metrics_lock:
            mismatches.append((n, i, x, y))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(64)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(WAIT_S * 3)
    self.assertFalse(any(t.is_alive() for t in threads))
    self.assertEqual(mismatches, [])

  def test_predict_through_the_wrapper(self):
    bundle = self.wrap()
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "two_outputs"
    request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.array([1.0, 2.0], np.float32))
    )
    request.output_filter.append("y2")
    response = predict_pb2.PredictResponse()
    predict_util.run_predict(bundle, request, response)
    self.assertEqual(list(response.outputs), ["y2"])
    self.assertEqual(list(response.outputs["y2"].float_val), [3.5, 4.0])

  def test_validation_errors_match_unbatched(self):
    bundle = self.wrap()
    sig = bundle.signatures["serving_default"]
    for inputs in (
        {"x": np.array([1], np.int32)},
        {"nope": _f32(1)},
        {"x": _f32(1), "extra": _f32(1)},
    ):
      with self.assertRaises(status.ServingError) as direct:
        self.inner.run(sig, inputs)
      with self.assertRaises(status.ServingError) as batched:
        bundle.submit(sig, inputs)
      self.assertEqual(batched.exception, direct.exception)

  def test_padding_with_real_model(self):
    metrics = RecordingMetrics()
    bundle = self.wrap(metrics, max_batch_size=8, allowed_batch_sizes=(4, 8))
    y = bundle.run(bundle.signatures["serving_default"], {"x": _f32(2, 4, 6)})
    np.testing.assert_allclose(y["y"], [3, 4, 5])
    self.assertIn(("padding_size", 1, 4), metrics.events)

  def test_tf_error_fails_batch(self):
    bundle = self.wrap()
    sig = bundle.signatures["classify_x_to_y"]
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(sig, {"inputs": np.array([b"not an example"], object)})
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)


class LoaderTest(absltest.TestCase):
  """SavedModelLoader wraps bundles when batching is configured."""

  def setUp(self):
    super().setUp()
    self.base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.scheduler = shared_batch_scheduler.SharedBatchScheduler(2)
    self.addCleanup(self.scheduler.shutdown, True, WAIT_S)
    self.metrics = RecordingMetrics()

  def load(self, export_dir, per_model=False, warmup_on=True):
    batching = batching_session.BatchingConfig(
        scheduler=self.scheduler,
        options=_options(max_batch_size=16),
        enable_per_model_batching_parameters=per_model,
        metrics=self.metrics,
    )
    config = saved_model_loader.SavedModelConfig(
        batching=batching, enable_model_warmup=warmup_on
    )
    loader = saved_model_loader.SavedModelLoader(
        servable_id.ServableId("half", 1), export_dir, config
    )
    loader.load()
    self.addCleanup(loader.unload)
    return loader.servable()

  def export(self, name="1") -> str:
    return half_plus_two.export_half_plus_two_tf1(os.path.join(self.base, name))

  def test_global_batching_and_warmup_through_the_wrapper(self):
    export_dir = self.export()
    request = predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.array([1.0], np.float32))
    )
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    path = warmup.warmup_path(export_dir)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(log.SerializeToString())
    bundle = self.load(export_dir)
    self.assertIsInstance(bundle, batching_session.BatchingBundle)
    self.assertEqual(bundle.options.max_batch_size, 16)
    self.assertEqual(bundle.export_dir, export_dir)
    # The warmup request went through the batching queue.
    self.assertIn(("wrapped_run_count", 1), self.metrics.events)
    y = bundle.run(bundle.signatures["serving_default"], {"x": _f32(4)})
    np.testing.assert_allclose(y["y"], [4.0])

  def test_per_model_parameters(self):
    plain = self.load(self.export("1"), per_model=True)
    self.assertIsInstance(plain, saved_model_bundle.SavedModelBundle)

    export_dir = self.export("2")
    with open(os.path.join(export_dir, "batching_params.pbtxt"), "w") as f:
      f.write(
          "max_batch_size { value: 4 } allowed_batch_sizes: [2, 4] "
          "num_batch_threads { value: 99 }"
      )
    batched = self.load(export_dir, per_model=True)
    self.assertIsInstance(batched, batching_session.BatchingBundle)
    self.assertEqual(batched.options.max_batch_size, 4)
    self.assertEqual(batched.options.allowed_batch_sizes, (2, 4))
    y = batched.run(batched.signatures["serving_default"], {"x": _f32(2)})
    np.testing.assert_allclose(y["y"], [3.0])

    export_dir = self.export("3")
    with open(os.path.join(export_dir, "batching_params.pbtxt"), "w") as f:
      f.write("max_batch_size { value: 4 } allowed_batch_sizes: [2, 3]")
    with self.assertRaises(status.ServingError) as ctx:
      self.load(export_dir, per_model=True)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        ctx.exception.message,
        "Last entry in allowed_batch_sizes must match max_batch_size; last "
        "entry was 3; expected 4",
    )


if __name__ == "__main__":
  absltest.main()
