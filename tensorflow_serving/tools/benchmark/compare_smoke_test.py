"""Runs the whole comparison briefly: every row served, nothing failed.

Timings are not asserted: shared CI hosts are far too noisy for that. The
MNIST data is synthetic, so the test needs nothing outside the runfiles.
"""

from __future__ import annotations

import json
import os

from absl.testing import absltest

from tensorflow_serving.example import mnist_test_util
from tensorflow_serving.tools.benchmark import compare


class CompareSmokeTest(absltest.TestCase):

  def test_comparison(self):
    tmp = self.create_tempdir().full_path
    mnist_dir = os.path.join(tmp, "mnist")
    mnist_test_util.write_synthetic_mnist(mnist_dir, num_train=200, num_test=50)
    out = os.path.join(tmp, "report.md")
    json_out = os.path.join(tmp, "report.json")
    report = compare.run(
        compare.Options(
            configs=list(compare.CONFIGS),
            concurrency=[1, 4],
            duration_s=1.0,
            warmup_s=0.5,
            in_process_duration_s=0.5,
            out=out,
            json_out=json_out,
            training_iteration=20,
            mnist_dir=mnist_dir,
            work_dir=os.path.join(tmp, "work"),
        )
    )
    print(report.markdown)

    self.assertLen(report.rows, 2 * len(compare.CONFIGS))
    for row in report.rows:
      with self.subTest(config=row.config.name, concurrency=row.concurrency):
        self.assertIsNotNone(row.summary, row.failure)
        self.assertEqual(
            row.summary["errors"], 0, row.summary["errors_by_status"]
        )
        self.assertGreater(row.summary["ok"], 0)
        self.assertGreater(row.summary["throughput_rps"], 0)
        # Every answer was checked against the in-process scores.
        self.assertTrue(row.summary["config"]["check"])
        self.assertIsNotNone(row.summary["server_cpu_pct"])
    self.assertGreater(report.in_process["throughput_rps"], 0)

    with open(out, encoding="utf-8") as f:
      text = f.read()
    self.assertEqual(text, report.markdown)
    self.assertIn(compare._HEADER, text)
    self.assertNotIn("failed:", text)
    self.assertIn("## Targets", text)
    # Concurrency 32 was not run, so the top-level ratios use concurrency 4.
    self.assertIn("at concurrency 4", text)
    with open(json_out, encoding="utf-8") as f:
      data = json.load(f)
    self.assertLen(data["rows"], len(report.rows))
    self.assertLen(data["targets"], len(report.targets))


if __name__ == "__main__":
  absltest.main()
