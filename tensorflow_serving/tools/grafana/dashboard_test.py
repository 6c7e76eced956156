"""The Grafana dashboard queries only metrics the server exports.

Every PromQL expression in the dashboard (panel targets and template
variable queries) is read from the JSON; each metric it names must be a
family in the server's exposition (util/metrics), or a histogram's
`_bucket`/`_sum`/`_count` series of one.
"""

from __future__ import annotations

import json
import os
import re

from absl.testing import absltest

from tensorflow_serving.util import metrics

DASHBOARD = os.path.join(os.path.dirname(__file__), "tf_serving_dashboard.json")
# The server's metric names all start with `:` (upstream's exporter turns
# `/tensorflow/serving/...` into `:tensorflow:serving:...`).
_METRIC = re.compile(r":[a-zA-Z_][a-zA-Z0-9_:]*")
_TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)


def exported_series() -> set[str]:
  metrics.reset_for_test()
  text = metrics.exposition().decode()
  series = set()
  for name, kind in _TYPE_LINE.findall(text):
    series.add(name)
    if kind == "histogram":
      series.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
  return series


def expressions(dashboard: dict) -> list[str]:
  exprs = []
  for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
      exprs.append(target["expr"])
  for variable in dashboard["templating"]["list"]:
    query = variable.get("query")
    if isinstance(query, dict):
      exprs.append(query["query"])
  return exprs


class DashboardTest(absltest.TestCase):

  def test_every_query_names_an_exported_metric(self):
    with open(DASHBOARD, encoding="utf-8") as f:
      dashboard = json.load(f)
    exported = exported_series()
    self.assertIn(":tensorflow:serving:request_count", exported)
    exprs = expressions(dashboard)
    self.assertGreaterEqual(len(exprs), 10)
    named = set()
    for expr in exprs:
      names = _METRIC.findall(expr)
      self.assertNotEmpty(names, expr)
      for name in names:
        self.assertIn(name, exported, f"{name} in {expr}")
      named.update(names)
    # The series this dashboard exists for are on it.
    for wanted in (
        ":tensorflow:serving:version_request_count",
        ":tensorflow:serving:version_request_latency_bucket",
        ":tensorflow:serving:batching_session:queuing_latency_bucket",
        ":tensorflow:serving:batching_session:queue_depth",
        ":tensorflow:serving:model_load_latency_bucket",
        ":tensorflow:serving:model_load_failure_count",
        ":tensorflow:serving:build_info",
        ":tensorflow:serving:request_log_count",
    ):
      self.assertIn(wanted, named)

  def test_a_missing_metric_would_be_caught(self):
    self.assertNotIn(":tensorflow:serving:no_such_metric", exported_series())
    self.assertEqual(
        _METRIC.findall('rate(:tensorflow:serving:x_bucket{a="b"}[1m])'),
        [":tensorflow:serving:x_bucket"],
    )


if __name__ == "__main__":
  absltest.main()
