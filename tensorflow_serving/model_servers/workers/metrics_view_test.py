"""Two workers' metrics scrape exactly as one server that counted both renders.

Each step runs in its own process, as the workers do: prometheus_client picks
its multiprocess mode when first imported, from the environment.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import absltest

# Runs in a child: records `steps` through util/metrics, then prints what
# exposition() renders (merged over the directory when it is set).
_CHILD = textwrap.dedent("""
    import json, os, sys
    from tensorflow_serving.util import metrics
    from tensorflow_serving.model_servers.workers import metrics_view
    steps = json.loads(sys.argv[1])
    for kind, *args in steps:
      if kind == "request":
        name, api, entrypoint, code, micros = args
        m = metrics.get()
        m.request_count.labels(name, code).inc()
        m.request_latency.labels(name, api, entrypoint).observe(micros)
      elif kind == "runtime":
        metrics.record_runtime_latency(*args)
      elif kind == "examples":
        metrics.record_example_count(*args)
      elif kind == "loaded":
        metrics.set_loaded_versions(*args)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
      metrics.set_exposition_source(metrics_view.MergedCollector(
          directory, lambda: metrics.get().registry))
    sys.stdout.write(metrics.exposition().decode())
""")

# Series in label order, so that the renderer, which has none of its own,
# lists them as the single process that created them in this order does.
_WORKER_A = [
    ["request", "m", "Predict", "GRPC", "OK", 250.0],
    ["request", "m", "Predict", "GRPC", "OK", 900.0],
    ["request", "m", "Predict", "GRPC", "OK", 31.0],
    ["runtime", "m", "Predict", "TF1", 180.0],
    ["runtime", "m", "Predict", "TF1", 45000.0],
    ["examples", "m", 4],
    ["loaded", "m", 1],
]
_WORKER_B = [
    ["request", "m", "Predict", "GRPC", "OK", 77.0],
    ["request", "m", "Predict", "REST", "UNAVAILABLE", 5.0],
    ["runtime", "m", "Predict", "TF1", 31.0],
    ["runtime", "m", "Predict", "TFLite", 12.0],
    ["examples", "m", 2],
    ["loaded", "m", 2],
]


def _run(steps, directory: str | None) -> str:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(sys.path)
  env.pop("PROMETHEUS_MULTIPROC_DIR", None)
  if directory:
    env["PROMETHEUS_MULTIPROC_DIR"] = directory
  proc = subprocess.run(
      [sys.executable, "-c", _CHILD, json.dumps(steps)],
      env=env,
      capture_output=True,
      text=True,
      check=True,
      timeout=120,
  )
  return proc.stdout


def _sample(text: str, prefix: str) -> list[str]:
  return [line for line in text.splitlines() if line.startswith(prefix)]


class MergedCollectorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.single = _run(_WORKER_A + _WORKER_B, None)

  def test_two_workers_render_as_one_server(self):
    with tempfile.TemporaryDirectory() as directory:
      _run(_WORKER_A, directory)
      _run(_WORKER_B, directory)
      merged = _run([], directory)
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="m",status="OK"} 4.0',
        merged,
    )
    self.assertIn("# TYPE :tensorflow:serving:request_count counter", merged)
    self.assertIn(
        ":tensorflow:serving:request_example_count_total" '{model="m"} 6.0',
        merged,
    )
    self.assertIn('le="32.4"', merged)
    # The single process ends with loaded_versions 2; livemax is also 2.
    self.assertEqual(merged, self.single)

  def test_the_scraped_worker_may_hold_series_of_its_own(self):
    with tempfile.TemporaryDirectory() as directory:
      _run(_WORKER_B, directory)
      # Worker A records, then renders what a scrape on its port gets.
      merged = _run(_WORKER_A, directory)
    self.assertEqual(merged, self.single)

  def test_a_retired_worker_still_counts_and_its_files_are_folded(self):
    with tempfile.TemporaryDirectory() as directory:
      _run(_WORKER_A, directory)
      _run(_WORKER_B, directory)
      pids = sorted(
          {
              os.path.basename(f).rsplit("_", 1)[1][:-3]
              for f in glob.glob(os.path.join(directory, "counter_*.db"))
          }
      )
      self.assertLen(pids, 2)
      # Imported here: the test process itself is no worker.
      from tensorflow_serving.model_servers.workers import metrics_view  # pylint: disable=g-import-not-at-top

      metrics_view.retire_process(directory, int(pids[1]))
      metrics_view.retire_process(directory, int(pids[0]))
      left = sorted(os.path.basename(f) for f in glob.glob(directory + "/*.db"))
      merged = _run([], directory)
    self.assertEqual(left, ["counter_retired.db", "histogram_retired.db"])
    # Counts stay whole; a gauge of processes that are gone is dropped.
    self.assertEqual(
        _sample(merged, ":tensorflow:serving:request_count{"),
        _sample(self.single, ":tensorflow:serving:request_count{"),
    )
    self.assertEqual(
        _sample(merged, ":tensorflow:serving:runtime_latency_bucket"),
        _sample(self.single, ":tensorflow:serving:runtime_latency_bucket"),
    )
    self.assertEqual(
        _sample(merged, ":tensorflow:serving:loaded_versions{"), []
    )
    self.assertEqual(merged.count("# TYPE"), self.single.count("# TYPE"))


if __name__ == "__main__":
  absltest.main()
