"""Metric names and exposition as Prometheus scrapers of upstream expect."""

import time

from absl.testing import absltest

from tensorflow_serving.util import metrics


class MetricsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()

  def test_name_rewriting(self):
    self.assertEqual(
        metrics.prometheus_name("/tensorflow/serving/request_count"),
        ":tensorflow:serving:request_count",
    )
    self.assertEqual(metrics.prometheus_name("/a-b/c.d"), ":a:b:c:d")

  def test_request_count_and_latency_exposition(self):
    metrics.record_request("mnist", "predict", "GRPC", "OK", 0.0)
    metrics.record_request("mnist", "predict", "REST", "NOT_FOUND", 0.0)
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="mnist",status="OK"} '
        "1.0",
        text,
    )
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="mnist",'
        'status="NOT_FOUND"} 1.0',
        text,
    )
    self.assertNotIn("request_count_total", text)
    self.assertIn("# TYPE :tensorflow:serving:request_count counter\n", text)
    self.assertIn("# TYPE :tensorflow:serving:request_latency histogram", text)
    # Latency only for the successful request, as upstream.
    self.assertIn(
        ':tensorflow:serving:request_latency_count{API="predict",'
        'entrypoint="GRPC",model_name="mnist"} 1.0',
        text,
    )
    self.assertNotIn(
        ':tensorflow:serving:request_latency_count{API="predict",'
        'entrypoint="REST"',
        text,
    )

  def test_per_version_and_signature_series(self):
    metrics.record_request(
        "m", "Predict", "GRPC", "OK", time.perf_counter(), "3", "sig"
    )
    metrics.record_request("m", "Predict", "REST", "NOT_FOUND", 0.0)
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:version_request_count{API="Predict",'
        'entrypoint="GRPC",model_name="m",signature="sig",status="OK",'
        'version="3"} 1.0',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:version_request_count{API="Predict",'
        'entrypoint="REST",model_name="m",signature="",status="NOT_FOUND",'
        'version=""} 1.0',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:version_request_latency_count{API="Predict",'
        'entrypoint="GRPC",model_name="m",signature="sig",version="3"} 1.0',
        text,
    )
    # Upstream's series keep their labels.
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 1.0',
        text,
    )

  def test_build_info_and_load_metrics(self):
    metrics.set_build_info("0.1.0", "cpu", "opt", "2.21.0")
    metrics.record_model_load("m", 1500.0)
    metrics.record_model_load_failure("m", "DATA_LOSS")
    metrics.batching_queue_depth("pool").set(7)
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:build_info{build_device="cpu",'
        'compilation_mode="opt",tensorflow_version="2.21.0",'
        'version="0.1.0"} 1.0',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:model_load_latency_count{model_name="m"} 1.0',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:model_load_failure_count{model_name="m",'
        'status="DATA_LOSS"} 1.0',
        text,
    )
    self.assertIn(
        ":tensorflow:serving:batching_session:queue_depth{"
        'thread_pool_name="pool"} 7.0',
        text,
    )

  def test_request_model_names_cannot_grow_series_without_bound(self):
    # A client may send any model name; past the cap they share one series.
    start = time.perf_counter()
    for i in range(metrics.MAX_SERIES_PER_METRIC + 50):
      metrics.record_request(
          f"random{i}", "Predict", "GRPC", "NOT_FOUND", start
      )
    text = metrics.exposition().decode()
    series = [
        line
        for line in text.splitlines()
        if line.startswith(":tensorflow:serving:request_count{")
    ]
    self.assertLen(series, metrics.MAX_SERIES_PER_METRIC + 1)
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="__other__",'
        'status="NOT_FOUND"} 50.0',
        text,
    )

  def test_latency_buckets_match_upstream(self):
    self.assertLen(metrics.LATENCY_BUCKETS_US, 34)
    self.assertEqual(metrics.LATENCY_BUCKETS_US[0], 10.0)
    self.assertAlmostEqual(metrics.LATENCY_BUCKETS_US[1], 18.0)


if __name__ == "__main__":
  absltest.main()
