"""Runs the whole comparison briefly: every row served and checked, no errors.

Timings are not asserted: shared CI hosts are far too noisy for that. The
MNIST data is synthetic, so the test needs nothing outside the runfiles.
"""

from __future__ import annotations

import json
import os

from absl.testing import absltest

from tensorflow_serving.example import mnist_test_util
from tensorflow_serving.tools.benchmark import orchestration
from tensorflow_serving.tools.benchmark import report as report_lib


class CompareSmokeTest(absltest.TestCase):

  def test_comparison(self):
    tmp = self.create_tempdir().full_path
    mnist_dir = os.path.join(tmp, "mnist")
    mnist_test_util.write_synthetic_mnist(mnist_dir, num_train=200, num_test=50)
    out = os.path.join(tmp, "report.md")
    json_out = os.path.join(tmp, "report.json")
    (report,) = orchestration.run(
        orchestration.Options(
            configs=list(orchestration.CONFIGS),
            concurrency=[1, 4],
            duration_s=1.0,
            warmup_s=0,
            in_process_duration_s=0.5,
            # One more batched server, with 1 thread (the rows have 2).
            sweep_num_batch_threads=[1],
            sweep_configs=["ours_rest_batching"],
            sweep_concurrency=4,
            out=out,
            json_out=json_out,
            training_iteration=20,
            mnist_dir=mnist_dir,
            work_dir=os.path.join(tmp, "work"),
        )
    )
    print(report.markdown)

    # Every server with every default client: grpcio, h2load and the raw
    # one for gRPC, wrk and the raw one for REST.
    clients = {"grpc": 3, "rest": 2}
    self.assertLen(
        report.rows,
        2 * sum(clients[c.protocol] for c in orchestration.CONFIGS.values()),
    )
    self.assertEqual(
        [(r.client, r.num_batch_threads) for r in report.sweep], [("wrk", 1)]
    )
    for row in report.rows + report.sweep:
      with self.subTest(
          config=row.config.name, client=row.client, c=row.concurrency
      ):
        self.assertIsNotNone(row.summary, row.failure)
        self.assertEqual(
            row.summary["errors"], 0, row.summary["errors_by_status"]
        )
        self.assertGreater(row.summary["ok"], 0)
        self.assertGreater(row.summary["throughput_rps"], 0)
        # Every answer was checked against the in-process scores.
        self.assertTrue(row.summary["config"]["check"])
        self.assertIsNotNone(row.summary["server_cpu_us_per_request"])
        self.assertIsNotNone(row.summary["host_cpu"])
        if row.client == "h2load":
          self.assertGreater(row.summary["verified_by_grpcio"], 0)
    self.assertGreater(report.in_process["throughput_rps"], 0)
    correct = [
        v
        for v in report.verdicts
        if v.target == "every answer checked, no request failed"
    ]
    self.assertEqual([v.verdict for v in correct], ["PASS"])

    with open(out, encoding="utf-8") as f:
      text = f.read()
    self.assertEqual(text, report.markdown)
    self.assertIn(report_lib.DETAIL_HEADER, text)
    self.assertNotIn("| failed", text)
    self.assertIn("## Targets", text)
    self.assertIn("## num_batch_threads sweep", text)
    # Concurrency 32 was not run, so the top-level ratios use concurrency 4.
    self.assertIn("gRPC batched vs naive grpc.aio at 4 [grpcio]", text)
    self.assertIn("gRPC batched vs naive grpc.aio at 4 [h2load]", text)
    with open(json_out, encoding="utf-8") as f:
      data = json.load(f)
    (run,) = data["runs"]
    self.assertLen(run["rows"], len(report.rows))
    self.assertLen(run["sweep"], len(report.sweep))
    self.assertLen(run["targets"], len(report.verdicts))


if __name__ == "__main__":
  absltest.main()
