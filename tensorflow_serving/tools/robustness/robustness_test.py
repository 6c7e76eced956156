"""Every row of the attack table, scaled down, as a regression test.

One target server (the production engines, no TensorFlow) with budgets and
timeouts scaled down by flags; each attack runs under legit gRPC and REST
load. Each must get its refusal, leave every legit call answered, and grow
the server's RSS by less than the bound. Then SIGTERM during a flood must
stop the server within its grace period.
"""

from __future__ import annotations

import re
import threading
import time

from absl.testing import absltest

from tensorflow_serving.tools.robustness import attacks
from tensorflow_serving.tools.robustness import cases
from tensorflow_serving.tools.robustness import harness

CONNECTION_BUDGET = 32 << 20
SERVER_ARGS = (
    "--grpc_channel_arguments="
    f"grpc.tf_serving.max_connection_buffer_bytes={CONNECTION_BUDGET},"
    f"grpc.tf_serving.max_server_buffer_bytes={4 * CONNECTION_BUDGET},"
    # Longer than the legit deadline: connections waiting for it must not
    # stall legit calls (they once did, through the budget).
    "grpc.server_handshake_timeout_ms=3000",
    f"--rest_api_max_body_bytes={8 << 20}",
    "--rest_api_header_timeout_ms=1000",
    "--rest_api_body_timeout_ms=2000",
)
# What one scaled attack may add to the server's memory: the budgets above
# plus the interpreter's own slack.
RSS_BOUND = 160 << 20


class RobustnessTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.target = harness.Target(SERVER_ARGS)
    cls.size = attacks.Size()

  @classmethod
  def tearDownClass(cls):
    cls.target.stop()
    super().tearDownClass()

  def run_case(self, case: cases.Case) -> harness.Row:
    row = harness.run(
        self.target, case.name, lambda: case.attack(self.target, self.size)
    )
    print(harness.markdown([row]).splitlines()[-1], flush=True)
    self.assertTrue(
        cases.matches(case, row.refusal), f"{case.name}: {row.refusal}"
    )
    self.assertEqual(row.legit_failures, 0, f"{case.name}: {row.failures}")
    self.assertGreater(row.legit_calls, 4)
    self.assertLess(row.rss_growth, RSS_BOUND, case.name)
    self.assertLess(row.slowest_legit_s, 2.0, case.name)
    self.assertTrue(self.target.alive())
    return row


def _add_cases():
  for i, case in enumerate(
      cases.cases(idle_wait_s=6.0, held_message_bytes=CONNECTION_BUDGET - 1024)
  ):
    name = re.sub(r"\W+", "_", case.name.lower()).strip("_")

    def test(self, case=case):
      self.run_case(case)

    setattr(RobustnessTest, f"test_{i:02d}_{name}", test)


_add_cases()


class LogFloodAndShutdownTest(absltest.TestCase):

  def test_warnings_are_rate_limited(self):
    target = harness.Target(SERVER_ARGS)
    self.addCleanup(target.stop)
    started = time.monotonic()
    attacks.bad_connections(target.grpc_port, attacks.Size(bad_connections=200))
    elapsed = time.monotonic() - started
    warnings = [
        line
        for line in target.log().splitlines()
        if "failed: not HTTP/2" in line
    ]
    self.assertLessEqual(len(warnings), 1 + elapsed / 5.0 + 1)

  def test_sigterm_stops_within_the_grace_period_under_attack(self):
    target = harness.Target(SERVER_ARGS)
    flood = threading.Thread(
        target=attacks.continuation_flood,
        args=(target.grpc_port, attacks.Size(continuation=1 << 30)),
        daemon=True,
    )
    flood.start()
    time.sleep(0.5)
    took = target.stop(timeout_s=20)
    self.assertLess(took, 10.0)
    self.assertEqual(target.proc.returncode, 0, target.log()[-2000:])


if __name__ == "__main__":
  absltest.main()
