"""Tests putting py-spy's samples in the server's layers."""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.tools.benchmark import layers

_LOOP = (
    "thread (24824): MainThread;<module> (tensorflow_serving/model_servers/"
    "main.py:271);Runner.run (asyncio/runners.py:118)"
)
# Raw py-spy output (--threads), root first, one line per distinct stack.
_RAW = f"""\
{_LOOP};_Connection.data_received (tensorflow_serving/util/grpc_h2/server.py:300);Decoder.decode (hpack/hpack.py:400) 10
{_LOOP};PredictionService.Predict (tensorflow_serving/model_servers/grpc_services.py:68);tensor_proto_to_ndarray (tensorflow_serving/servables/tensorflow/tensor_codec.py:80);frombuffer (numpy/core/x.py:1) 6
{_LOOP};handle (tensorflow_serving/model_servers/http_rest_api_handler.py:90);decode (tensorflow_serving/util/json_tensor/predict_request.py:10) 4
{_LOOP};_Connection._flush (tensorflow_serving/util/grpc_h2/server.py:820) 5
{_LOOP} 50
thread (25537): request_0;_worker (concurrent/futures/thread.py:90);BaseSession._call_tf_sessionrun (tensorflow/python/client/session.py:1483) 8
thread (25538): request_1;_worker (concurrent/futures/thread.py:90) 2
thread (25600): batch_threads_0;_run (tensorflow_serving/batching/shared_batch_scheduler.py:470);record (tensorflow_serving/batching/prometheus_metrics.py:20) 3
thread (25601): batch_threads_1;_run (tensorflow_serving/batching/shared_batch_scheduler.py:470);wait (threading.py:300) 1
not a stack line
thread (9): x;mystery (somewhere/else.py:1) 1
"""


class LayersTest(absltest.TestCase):

  def test_nearest_matching_frame_decides(self):
    profile = layers.parse(_RAW.splitlines())
    self.assertEqual(profile.total, 90)
    # Waiting leaves (the loop polling, an idle pool worker, a condition
    # wait) are set aside: 50 + 2 + 1 samples.
    self.assertEqual(profile.idle, 53)
    self.assertEqual(
        dict(profile.layers),
        {
            "HTTP/2 + gRPC transport": 15,
            "tensor codec (proto <-> numpy)": 6,
            "JSON codec": 4,
            "model run (TensorFlow)": 8,
            # batching's metrics count as metrics, not batching.
            "metrics": 3,
            "other": 1,
        },
    )
    self.assertEqual(
        dict(profile.threads),
        {"MainThread": 75, "request": 10, "batch_threads": 4, "x": 1},
    )
    self.assertEqual(profile.leaves["Decoder.decode (hpack/hpack.py)"], 10)

  def test_each_threads_cpu_is_split_as_its_samples(self):
    profile = layers.parse(_RAW.splitlines())
    cpu = layers.cpu_by_layer(
        profile,
        {
            # The loop: 25 samples, 0.5 s of CPU.
            24824: ("main.py", 0.5),
            # A pool thread: all its samples in the model run.
            25537: ("main.py", 0.2),
            # py-spy saw this one, but it used no CPU.
            25538: ("main.py", 0.0),
            # Native threads py-spy cannot see, placed by name.
            7: ("tf_Compute", 0.2),
            8: ("jemalloc_bg", 0.1),
        },
    )
    # The loop's 0.5 s over its 25 working samples, not its 50 polling ones.
    self.assertAlmostEqual(cpu["HTTP/2 + gRPC transport"], 0.5 * 15 / 25)
    self.assertAlmostEqual(cpu["JSON codec"], 0.5 * 4 / 25)
    self.assertNotIn("event loop (asyncio, uvloop)", cpu)
    self.assertAlmostEqual(cpu["model run (TensorFlow)"], 0.2 + 0.2)
    self.assertAlmostEqual(cpu[layers.NATIVE_OTHER], 0.1)
    self.assertNotIn("model runner, worker-pool hop", cpu)
    # A thread seen only waiting gets its CPU split over those samples.
    only_waiting = layers.cpu_by_layer(profile, {25538: ("main.py", 0.3)})
    self.assertEqual(dict(only_waiting), {"model runner, worker-pool hop": 0.3})
    self.assertEqual(
        dict(
            layers.cpu_by_thread_group(
                profile, {24824: ("main.py", 0.5), 7: ("tf_Compute", 0.2)}
            )
        ),
        {"MainThread": 0.5, "tf_Compute": 0.2},
    )
    lines = layers.table(cpu, 200.0)
    self.assertEqual(lines[2], "| model run (TensorFlow) | 40.0% | 80 |")
    self.assertIn("| other native threads | 10.0% | 20 |", lines)
    self.assertIn(
        "| other native threads | 10.0% | n/a |", layers.table(cpu, None)
    )

  def test_moved_modules_keep_their_layer(self):
    for path, layer in (
        (
            "tensorflow_serving/util/net/grpc_h2/server.py",
            "HTTP/2 + gRPC transport",
        ),
        ("tensorflow_serving/util/net/http1/engine.py", "HTTP/1.1 transport"),
        (
            "tensorflow_serving/model_servers/http_server.py",
            "HTTP/1.1 transport",
        ),
        ("tensorflow_serving/util/json_tensor.py", "JSON codec"),
        ("grpc/aio/_server.py", "HTTP/2 + gRPC transport"),
    ):
      with self.subTest(path=path):
        self.assertEqual(layers.layer_of(["a.py", path]), layer)


if __name__ == "__main__":
  absltest.main()
