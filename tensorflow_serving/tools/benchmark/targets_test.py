"""Tests the targets judged from a run's rows, and the report around them."""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.tools.benchmark import report
from tensorflow_serving.tools.benchmark import rows
from tensorflow_serving.tools.benchmark import targets

# req/s of each (config, client) at concurrency 1, 8, 32: every target met.
_PASSING = {
    ("ours_grpc", "grpcio"): (1300, 1400, 1500),
    ("ours_grpc_batching", "grpcio"): (1250, 3000, 4200),
    ("naive_grpc", "grpcio"): (900, 1000, 1000),
    ("ours_grpc", "h2load"): (1400, 1500, 1600),
    ("ours_grpc_batching", "h2load"): (1300, 3500, 4400),
    ("naive_grpc", "h2load"): (1000, 1100, 1100),
    ("ours_rest", "wrk"): (1300, 1400, 1500),
    ("ours_rest_batching", "wrk"): (1250, 2500, 4000),
    ("fastapi", "wrk"): (600, 700, 800),
    ("ours_grpc", "raw"): (100, 100, 100),  # not judged
}
_IN_PROCESS = {"throughput_rps": 2500.0}


def _row(name, client, c, rate, **summary):
  config = rows.ALL_CONFIGS[name]
  base = {
      "throughput_rps": rate,
      "errors": 0,
      "ok": int(rate),
      "errors_by_status": {},
      # p50 grows with concurrency and is lower for faster rows.
      "latency_ms": {"p50": 1e3 * c / rate, "p90": 1.0, "p99": 10.0},
      "server_cpu_us_per_request": (
          100.0 if config.protocol == "grpc" else 150.0
      ),
      "config": {"check": True},
  }
  base.update(summary)
  threads = 2 if config.batching else None
  return rows.Row(config, client, c, threads, summary=base)


def _rows(rates=None, overrides=None):
  """Rows at _PASSING's rates; overrides: {(name, client, c): summary}."""
  overrides = overrides or {}
  out = []
  for (name, client), levels in (rates or _PASSING).items():
    for c, rate in zip((1, 8, 32), levels):
      out.append(
          _row(name, client, c, rate, **overrides.get((name, client, c), {}))
      )
  return out


def _sweep(grpc_rates=(4200, 4000), rest_rates=(4000, 3900)):
  out = []
  for name, client, rates in (
      ("ours_grpc_batching", "grpcio", grpc_rates),
      ("ours_rest_batching", "wrk", rest_rates),
  ):
    for threads, rate in enumerate(rates, start=1):
      row = _row(name, client, 32, rate)
      row.num_batch_threads = threads
      out.append(row)
  return out


def _verdicts(all_rows, sweep=()):
  return {
      v.target: v
      for v in targets.evaluate(all_rows, _IN_PROCESS, (1, 8, 32), sweep)
  }


class TargetsTest(absltest.TestCase):

  def test_all_met(self):
    verdicts = _verdicts(_rows(), _sweep())
    failing = [v.line for v in verdicts.values() if v.verdict != "PASS"]
    self.assertEqual(failing, [])
    # Each gRPC target is judged for both user clients, REST with wrk.
    for client in ("grpcio", "h2load"):
      self.assertIn(
          f"gRPC batched vs naive grpc.aio at 32 [{client}]", verdicts
      )
    self.assertIn("REST batched vs FastAPI at 32 [wrk]", verdicts)
    self.assertFalse(any("[raw]" in target for target in verdicts))
    line = verdicts["gRPC batched vs naive grpc.aio at 32 [grpcio]"].line
    self.assertIn("4200 / 1000 req/s = 4.20x (target >= 4x)", line)

  def test_v2_rows(self):
    # Only judged where the run has them.
    self.assertFalse(any("v2" in t for t in _verdicts(_rows(), _sweep())))
    rates = dict(_PASSING)
    # At 32: v2 gRPC 4400 (= Predict's h2load row), JSON 3600 (>= 0.9 x
    # 4000), binary 4700 (< 1.2 x 4000), MLServer 500 and 1200 (ours
    # 4400 / 4000 over them: 8.8x, 3.3x), PyTriton 1000 and 900.
    rates[("ours_v2_grpc_batching", "h2load")] = (1, 1, 4400)
    rates[("ours_v2_rest_batching", "wrk")] = (1, 1, 3600)
    rates[("ours_v2_binary_rest_batching", "wrk")] = (1, 1, 4700)
    rates[("mlserver_grpc", "h2load")] = (1, 1, 500)
    rates[("mlserver_rest", "wrk")] = (1, 1, 1200)
    rates[("pytriton_grpc", "h2load")] = (1, 1, 1000)
    rates[("pytriton_rest", "wrk")] = (1, 1, 900)
    verdicts = _verdicts(_rows(rates), _sweep())
    v2 = {t: v.verdict for t, v in verdicts.items() if "v2" in t}
    self.assertEqual(
        v2,
        {
            "v2 gRPC raw contents vs gRPC Predict, batched at 32 [h2load]": (
                "PASS"
            ),
            "v2 REST JSON vs REST Predict, batched at 32 [wrk]": "PASS",
            "v2 REST binary extension vs REST Predict, batched at 32 [wrk]": (
                "FAIL"
            ),
            "gRPC Predict batched vs MLServer v2 at 32 [h2load]": "PASS",
            "REST Predict batched vs MLServer v2 at 32 [wrk]": "FAIL",
            "gRPC Predict batched vs PyTriton v2 at 32 [h2load]": "PASS",
            "REST Predict batched vs PyTriton v2 at 32 [wrk]": "PASS",
        },
    )

  def test_each_bound(self):
    rates = dict(_PASSING)
    rates[("ours_grpc_batching", "grpcio")] = (1000, 3000, 3500)
    rates[("ours_rest", "wrk")] = (800, 1400, 1500)
    verdicts = _verdicts(
        _rows(
            rates,
            {
                ("ours_rest_batching", "wrk", 32): {
                    "latency_ms": {"p50": 8.0, "p90": 9.0, "p99": 25.0},
                    "server_cpu_us_per_request": 201.0,
                },
                ("ours_grpc_batching", "h2load", 32): {
                    "server_cpu_us_per_request": 120.0,
                },
            },
        ),
        _sweep(grpc_rates=(4200, 3700)),
    )
    fails = {t for t, v in verdicts.items() if v.verdict == "FAIL"}
    self.assertEqual(
        fails,
        {
            # 3500 / 1000 < 4x, and below the in-process loop's 1.5x.
            "gRPC batched vs naive grpc.aio at 32 [grpcio]",
            "gRPC batched at 32 vs the in-process loop [grpcio]",
            # 1000 / 1300 < 0.9 at c=1.
            "gRPC batching on vs off at 1 [grpcio]",
            # 3500 < 4000 req/s over 32 REST connections.
            "gRPC batched: one HTTP/2 connection with 32 streams vs 32 REST "
            "connections [grpcio vs wrk]",
            # 800 / 600 < 1.5x.
            "REST unbatched vs FastAPI at 1 [wrk]",
            "REST batched p99 at 32 [wrk]",
            "REST server CPU per request, batched at 32 [wrk]",
            "gRPC batched at 32, num_batch_threads 1-2: each within 10% of "
            "the best [grpcio]",
        },
    )
    # 120 us is within "<= 120 us".
    self.assertEqual(
        verdicts["gRPC server CPU per request, batched at 32 [h2load]"].verdict,
        "PASS",
    )
    self.assertIn(
        "1: 4200, 2: 3700 req/s; worst/best = 0.88",
        verdicts[
            "gRPC batched at 32, num_batch_threads 1-2: each within 10% of "
            "the best [grpcio]"
        ].detail,
    )

  def test_p50_at_1(self):
    all_rows = _rows(
        overrides={
            ("ours_grpc", "h2load", 1): {"latency_ms": {"p50": 2.0, "p99": 3.0}}
        }
    )
    verdicts = _verdicts(all_rows)
    self.assertEqual(
        verdicts[
            "gRPC unbatched p50 at 1 below naive grpc.aio's [h2load]"
        ].verdict,
        "FAIL",
    )
    self.assertEqual(
        verdicts[
            "gRPC unbatched p50 at 1 below naive grpc.aio's [grpcio]"
        ].verdict,
        "PASS",
    )

  def test_errors_fail_and_missing_rows_are_na(self):
    all_rows = [
        r
        for r in _rows(
            overrides={
                ("naive_grpc", "grpcio", 32): {
                    "errors": 2,
                    "errors_by_status": {"UNAVAILABLE": 2},
                }
            }
        )
        if not (r.config.name == "fastapi" and r.concurrency == 8)
    ]
    verdicts = _verdicts(all_rows)
    target = verdicts["gRPC batched vs naive grpc.aio at 32 [grpcio]"]
    self.assertEqual(target.verdict, "FAIL")
    self.assertIn("had errors", target.detail)
    self.assertEqual(
        verdicts["REST unbatched vs FastAPI at 8 [wrk]"].verdict, "N/A"
    )
    correct = verdicts["every answer checked, no request failed"]
    self.assertEqual(correct.verdict, "FAIL")
    self.assertIn("naive_grpc/grpcio/32", correct.detail)

  def test_unchecked_rows_fail_correctness(self):
    all_rows = _rows(
        overrides={("fastapi", "wrk", 1): {"config": {"check": False}}}
    )
    correct = _verdicts(all_rows)["every answer checked, no request failed"]
    self.assertEqual(correct.verdict, "FAIL")
    self.assertIn("were not checked", correct.detail)


class ReportTest(absltest.TestCase):

  def test_tables_and_runs(self):
    all_rows = _rows()
    sweep = _sweep()
    verdicts = targets.evaluate(all_rows, None, (1, 8, 32), sweep)
    text = report.markdown(
        title="t",
        context={"date": "d", "load_before": "0", "load_after": "0"},
        settings=["setting"],
        rows=all_rows,
        sweep=sweep,
        concurrency=(1, 8, 32),
        in_process=None,
        verdicts=verdicts,
        repeats=1,
    )
    self.assertIn("| ours | grpc | on | grpcio | 1250 | 3000 | 4200 |", text)
    self.assertIn(report.DETAIL_HEADER, text)
    self.assertIn("## num_batch_threads sweep", text)
    self.assertIn(
        "- **N/A** gRPC batched at 32 vs the in-process loop [grpcio]", text
    )
    across = report.across_runs([verdicts, verdicts])
    self.assertIn("| run 1 | run 2 | held in every run |", across)
    self.assertIn("REST batched vs FastAPI at 32 [wrk] | PASS", across)
    self.assertIn(" | no |", across)  # the in-process target was N/A


if __name__ == "__main__":
  absltest.main()
