"""Tests the load generator's percentiles and summaries."""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.tools.benchmark import stats


class PercentileTest(absltest.TestCase):

  def test_nearest_rank(self):
    values = list(range(1, 101))  # 1..100
    self.assertEqual(stats.percentile(values, 50), 50)
    self.assertEqual(stats.percentile(values, 90), 90)
    self.assertEqual(stats.percentile(values, 99), 99)
    self.assertEqual(stats.percentile(values, 100), 100)
    self.assertEqual(stats.percentile(values, 0), 1)

  def test_is_always_an_observed_value(self):
    values = [0.001, 0.002, 0.010]
    self.assertEqual(stats.percentile(values, 50), 0.002)
    self.assertEqual(stats.percentile(values, 99), 0.010)
    self.assertEqual(stats.percentile([7.0], 1), 7.0)
    self.assertEqual(stats.percentile([7.0], 99.9), 7.0)

  def test_rejects_bad_input(self):
    with self.assertRaises(ValueError):
      stats.percentile([], 50)
    with self.assertRaises(ValueError):
      stats.percentile([1.0], 101)


class AggregateTest(absltest.TestCase):

  def test_merges_workers(self):
    a = stats.WorkerResult(
        latencies_s=[0.001] * 90,
        errors={"UNAVAILABLE": 2},
        elapsed_s=1.0,
        cpu_s=0.25,
        server_cpu_s=1.5,
    )
    b = stats.WorkerResult(
        latencies_s=[0.010] * 10,
        errors={"UNAVAILABLE": 1, "malformed": 1},
        elapsed_s=2.0,
        cpu_s=0.5,
    )
    s = stats.aggregate([a, b])
    self.assertEqual(s["ok"], 100)
    self.assertEqual(s["errors"], 4)
    self.assertEqual(s["requests"], 104)
    self.assertEqual(s["errors_by_status"], {"UNAVAILABLE": 3, "malformed": 1})
    # Overlapping windows: rates add up (90/1 s + 10/2 s).
    self.assertAlmostEqual(s["throughput_rps"], 95.0)
    self.assertEqual(s["elapsed_s"], 2.0)
    self.assertAlmostEqual(s["latency_ms"]["p50"], 1.0)
    self.assertAlmostEqual(s["latency_ms"]["p90"], 1.0)
    self.assertAlmostEqual(s["latency_ms"]["p99"], 10.0)
    self.assertAlmostEqual(s["latency_ms"]["max"], 10.0)
    self.assertAlmostEqual(s["latency_ms"]["mean"], 1.9)
    self.assertAlmostEqual(s["loadgen_cpu_pct"], 37.5)
    self.assertAlmostEqual(s["loadgen_cpu_us_per_request"], 1e6 * 0.75 / 104)
    self.assertAlmostEqual(s["server_cpu_pct"], 75.0)
    # All of the server's CPU over every request answered in the window.
    self.assertAlmostEqual(s["server_cpu_us_per_request"], 1e6 * 1.5 / 104)

  def test_no_successes(self):
    s = stats.aggregate([stats.WorkerResult([], {"HTTP 500": 3}, 1.0, 0.1)])
    self.assertIsNone(s["latency_ms"])
    self.assertEqual(s["throughput_rps"], 0)
    self.assertIsNone(s["server_cpu_pct"])
    self.assertIsNone(s["server_cpu_us_per_request"])


class LatencyTest(absltest.TestCase):

  def test_milliseconds_of_sorted_seconds(self):
    latency = stats.latency_ms([0.001, 0.002, 0.003, 0.010])
    self.assertAlmostEqual(latency["min"], 1.0)
    self.assertAlmostEqual(latency["p50"], 2.0)
    self.assertAlmostEqual(latency["p99"], 10.0)
    self.assertAlmostEqual(latency["mean"], 4.0)
    self.assertIsNone(stats.latency_ms([]))


if __name__ == "__main__":
  absltest.main()
