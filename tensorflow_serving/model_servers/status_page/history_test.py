"""The traffic history: rates, percentiles and batch sizes between readings."""

import time

from absl.testing import absltest

from tensorflow_serving.model_servers.status_page import history
from tensorflow_serving.util import metrics

ALL = history.ALL_MODELS


def _observe(model: str, code: str, latency_us: float = 0.0) -> None:
  m = metrics.get()
  m.request_count.labels(model, code).inc()
  if code == "OK":
    m.request_latency.labels(model, "predict", "REST").observe(latency_us)


class QuantileTest(absltest.TestCase):

  def test_interpolates_within_the_bucket(self):
    bounds = (10.0, 20.0, float("inf"))
    # 10 observations, all in (10, 20]: the median is halfway.
    self.assertAlmostEqual(history.quantile(0.5, bounds, [0, 10, 10]), 15.0)
    self.assertAlmostEqual(history.quantile(0.99, bounds, [0, 10, 10]), 19.9)

  def test_first_bucket_starts_at_zero(self):
    self.assertAlmostEqual(
        history.quantile(0.5, (10.0, float("inf")), [4, 4]), 5.0
    )

  def test_inf_bucket_answers_its_lower_bound(self):
    self.assertEqual(
        history.quantile(0.99, (10.0, 20.0, float("inf")), [0, 1, 10]), 20.0
    )

  def test_no_observations(self):
    self.assertIsNone(history.quantile(0.5, (1.0, float("inf")), [0, 0]))


class SamplerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()
    self.names = ["a", "b"]
    self.sampler = history.Sampler(
        lambda: self.names, period_s=2.0, window_s=10.0
    )

  def test_first_reading_is_only_a_baseline(self):
    _observe("a", "OK", 100)
    self.sampler.sample(now_s=100.0, wall_s=1000.0)
    self.assertEqual(self.sampler.points(), [])

  def test_rates_and_errors_per_model_and_in_total(self):
    _observe("a", "OK", 100)  # Before the baseline: not in any interval.
    self.sampler.sample(now_s=100.0, wall_s=1000.0)
    for _ in range(6):
      _observe("a", "OK", 1500)
    _observe("a", "NOT_FOUND")
    _observe("b", "INVALID_ARGUMENT")
    _observe("typo", "NOT_FOUND")  # Not configured: only in the total.
    self.sampler.sample(now_s=102.0, wall_s=1002.0)
    (point,) = self.sampler.points()
    self.assertEqual(point.wall_s, 1002.0)
    a = point.models["a"]
    self.assertAlmostEqual(a.requests_per_s, 3.5)
    self.assertEqual(a.errors_per_s, {"NOT_FOUND": 0.5})
    # 1500 us falls in upstream's (1102.0, 1983.6] us bucket.
    self.assertBetween(a.p50_ms, 1.10, 1.99)
    self.assertBetween(a.p99_ms, a.p50_ms, 1.99)
    b = point.models["b"]
    self.assertAlmostEqual(b.requests_per_s, 0.5)
    self.assertIsNone(b.p50_ms)  # No successful request.
    self.assertNotIn("typo", point.models)
    total = point.models[ALL]
    self.assertAlmostEqual(total.requests_per_s, 4.5)
    self.assertEqual(
        total.errors_per_s,
        {"NOT_FOUND": 1.0, "INVALID_ARGUMENT": 0.5},
    )

  def test_percentiles_cover_only_the_interval(self):
    self.sampler.sample(now_s=0.0, wall_s=0.0)
    for _ in range(100):
      _observe("a", "OK", 50_000)  # 50 ms
    self.sampler.sample(now_s=2.0, wall_s=2.0)
    for _ in range(100):
      _observe("a", "OK", 15)  # 15 us
    self.sampler.sample(now_s=4.0, wall_s=4.0)
    slow, fast = (p.models["a"] for p in self.sampler.points())
    self.assertBetween(slow.p50_ms, 37.4, 67.5)  # (37480, 67466] us
    self.assertLess(fast.p99_ms, 0.02)

  def test_window_is_bounded(self):
    for i in range(20):
      _observe("a", "OK", 10)
      self.sampler.sample(now_s=2.0 * i, wall_s=2.0 * i)
    points = self.sampler.points()
    self.assertLen(points, 5)  # 10 s window / 2 s period.
    self.assertEqual(points[-1].wall_s, 38.0)

  def test_reset_counter_counts_from_zero(self):
    for _ in range(10):
      _observe("a", "OK", 10)
    self.sampler.sample(now_s=0.0, wall_s=0.0)
    metrics.reset_for_test()
    _observe("a", "OK", 10)
    self.sampler.sample(now_s=1.0, wall_s=1.0)
    (point,) = self.sampler.points()
    self.assertAlmostEqual(point.models["a"].requests_per_s, 1.0)

  def test_batch_sizes(self):
    batching = metrics.get().batching_input_batch_size
    self.sampler.sample(now_s=0.0, wall_s=0.0)
    for size in (1, 3, 3, 8):
      batching.labels("pool").observe(size)
    self.sampler.sample(now_s=2.0, wall_s=2.0)
    (point,) = self.sampler.points()
    pool = point.pools["pool"]
    self.assertAlmostEqual(pool.batches_per_s, 2.0)
    self.assertAlmostEqual(pool.mean_batch_size, 15 / 4)
    # Buckets le=1 (index 0), le=4 (index 2), le=8 (index 3).
    self.assertEqual(pool.batch_size_counts, {0: 1.0, 2: 2.0, 3: 1.0})

  def test_idle_series_keep_their_values(self):
    _observe("a", "OK", 100)
    self.sampler.sample(now_s=0.0, wall_s=0.0)
    for i in range(1, 4):  # Idle: the cache answers after one re-read.
      self.sampler.sample(now_s=2.0 * i, wall_s=2.0 * i)
    for _ in range(4):
      _observe("a", "OK", 100_000)
    self.sampler.sample(now_s=8.0, wall_s=8.0)
    self.sampler.sample(now_s=10.0, wall_s=10.0)
    points = self.sampler.points()
    self.assertEqual(
        [p.models["a"].requests_per_s for p in points], [0, 0, 0, 2, 0]
    )
    busy = points[3].models["a"]
    self.assertBetween(busy.p50_ms, 67.4, 121.5)  # (67466, 121439] us
    self.assertIsNone(points[4].models["a"].p50_ms)

  def test_matches_what_prometheus_exports(self):
    m = metrics.get()
    for i in range(300):
      m.request_latency.labels(f"m{i % 3}", "predict", "GRPC").observe(
          7.0 * i * i
      )
      m.request_latency.labels(f"m{i % 3}", "classify", "REST").observe(i)
    reading = history.read(["m0", "m1", "m2"], 0.0, 0.0)
    exported = {}
    for family in m.request_latency.collect():
      for sample in family.samples:
        if sample.name.endswith("_bucket"):
          key = (sample.labels["model_name"], float(sample.labels["le"]))
          exported[key] = exported.get(key, 0.0) + sample.value
    for model in ("m0", "m1", "m2"):
      got = reading.latency[model].buckets
      want = [exported[(model, b)] for b in metrics.LATENCY_BUCKETS_US]
      self.assertEqual(got, want)
    self.assertEqual(
        reading.latency[ALL].buckets,
        [
            sum(exported[(m, b)] for m in ("m0", "m1", "m2"))
            for b in metrics.LATENCY_BUCKETS_US
        ],
    )

  def test_workers_reading_of_collected_families_is_the_same(self):
    # With several workers the reading goes through the merged collector's
    # families (every worker's values); on one process's families it must
    # equal the direct reading.
    m = metrics.get()
    for i in range(200):
      _observe(f"m{i % 2}", "OK" if i % 7 else "NOT_FOUND", 13.0 * i)
    m.batching_input_batch_size.labels("pool").observe(3)
    direct = history.read(["m0", "m1"], 1.0, 2.0)
    collected = history.read_collected(
        m.registry.collect(), ["m0", "m1"], 1.0, 2.0
    )
    self.assertEqual(collected.requests, direct.requests)
    self.assertEqual(collected.latency.keys(), direct.latency.keys())
    for key in direct.latency:
      self.assertEqual(collected.latency[key], direct.latency[key])
    self.assertEqual(collected.batch_sizes, direct.batch_sizes)
    metrics.set_exposition_source(m.registry)
    self.addCleanup(metrics.set_exposition_source, None)
    self.assertEqual(
        history.read(["m0", "m1"], 1.0, 2.0).requests, direct.requests
    )

  def test_names_none_stops_the_thread(self):
    self.names = None
    self.sampler.period_s = 0.01
    self.sampler.start()
    self.sampler._thread.join(5)  # pylint: disable=protected-access
    self.assertFalse(self.sampler._thread.is_alive())  # pylint: disable=protected-access

  def test_background_thread_samples(self):
    sampler = history.Sampler(lambda: ["a"], period_s=0.05, window_s=10.0)
    sampler.start()
    try:
      deadline = time.monotonic() + 10
      while len(sampler.points()) < 2 and time.monotonic() < deadline:
        _observe("a", "OK", 10)
        time.sleep(0.02)
    finally:
      sampler.stop()
    self.assertGreaterEqual(len(sampler.points()), 2)


if __name__ == "__main__":
  absltest.main()
