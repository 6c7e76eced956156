"""Tests reading h2load's output and the byte-count check of its answers."""

from __future__ import annotations

from absl.testing import absltest

from tensorflow_serving.tools.benchmark import h2load

# h2load 1.52's summary of a run against a gRPC server (100-byte answers).
_OUTPUT = """\
finished in 511.05ms, 2152.00 req/s, 432.99KB/s
requests: 1076 total, 1080 started, 1076 done, 1076 succeeded, 0 failed, \
0 errored, 0 timeout
status codes: 1076 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 216.50KB (221693) total, 67.25KB (68864) headers (space savings \
18.99%), 105.08KB (107600) data
                     min         max         mean         sd        +/- sd
time for request:      686us      8.37ms      1.85ms       906us    90.52%
"""


class ParseTest(absltest.TestCase):

  def test_summary_lines(self):
    result = h2load.parse_output(_OUTPUT)
    self.assertAlmostEqual(result["wall_s"], 0.51105)
    self.assertAlmostEqual(result["rps"], 2152.0)
    self.assertEqual(result["done"], 1076)
    self.assertEqual(result["started"], 1080)
    self.assertEqual(result["succeeded"], 1076)
    self.assertEqual(result["status_2xx"], 1076)
    self.assertEqual(result["status_other"], 0)
    self.assertEqual(result["data_bytes"], 107600)

  def test_seconds_and_missing_lines(self):
    text = _OUTPUT.replace("511.05ms", "3.00s")
    self.assertAlmostEqual(h2load.parse_output(text)["wall_s"], 3.0)
    with self.assertRaisesRegex(RuntimeError, "no data line"):
      h2load.parse_output(_OUTPUT.replace("data", "body"))

  def test_read_log_keeps_2xx(self):
    path = self.create_tempfile(
        content="1796118837873696\t200\t2507\n1796118837874780\t503\t100\n"
        "1796118837874781\t200\t1455\n"
    ).full_path
    self.assertEqual(h2load.read_log(path), [0.001455, 0.002507])


class CheckCountsTest(absltest.TestCase):

  def _result(self, **changes):
    result = h2load.parse_output(_OUTPUT)
    result.update(changes)
    return result

  def test_one_message_per_request(self):
    self.assertEqual(h2load.check_counts(self._result(), 100), {})

  def test_failed_calls_carry_no_message(self):
    # Three calls answered with trailers only: 2xx, but 300 bytes short.
    errors = h2load.check_counts(self._result(data_bytes=107300), 100)
    self.assertEqual(errors, {"no_message": 3})

  def test_other_sizes_and_statuses(self):
    errors = h2load.check_counts(self._result(data_bytes=107650), 100)
    self.assertEqual(errors, {"wrong_size": 1})
    errors = h2load.check_counts(
        self._result(status_other=2, failed=2, timeout=1), 100
    )
    self.assertEqual(
        errors, {"HTTP non-2xx": 2, "h2load failed": 2, "h2load timeout": 1}
    )


if __name__ == "__main__":
  absltest.main()
