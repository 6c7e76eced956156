"""The open-loop driver's schedule and accounting, with a fake server."""

from __future__ import annotations

import asyncio
import time

from absl.testing import absltest

from tensorflow_serving.tools.benchmark import open_loop


class OpenLoopTest(absltest.TestCase):

  def test_arrivals_do_not_wait_for_answers(self):
    started: list[float] = []

    async def send(index: int) -> str:
      started.append(time.monotonic())
      await asyncio.sleep(0.3)  # Slower than the arrivals: a closed loop
      return open_loop.OK  # would send one call in the whole window.

    level = asyncio.run(open_loop.drive(send, 100.0, 0.5, deadline_s=1.0))
    self.assertEqual(level.sent, 50)
    self.assertEqual(level.outcomes, {open_loop.OK: 50})
    self.assertAlmostEqual(level.goodput_per_s, 100.0)
    # Spread over the window, not bunched behind the answers.
    self.assertLess(started[-1] - started[0], 0.7)
    self.assertGreater(started[-1] - started[0], 0.4)
    self.assertGreaterEqual(level.latency_ms["p50"], 300.0)

  def test_outcomes_and_answers_past_the_deadline(self):
    async def send(index: int) -> str:
      if index % 4 == 0:
        return open_loop.REFUSED
      if index % 4 == 1:
        await asyncio.sleep(0.15)  # Answered, but after the 0.1 s deadline.
        return open_loop.OK
      if index % 4 == 2:
        return "INTERNAL"
      await asyncio.sleep(0.01)
      return open_loop.OK

    level = asyncio.run(open_loop.drive(send, 80.0, 0.5, deadline_s=0.1))
    self.assertEqual(level.sent, 40)
    self.assertEqual(
        level.outcomes,
        {
            open_loop.REFUSED: 10,
            open_loop.LATE: 10,
            "INTERNAL": 10,
            open_loop.OK: 10,
        },
    )
    self.assertAlmostEqual(level.goodput_per_s, 20.0)
    self.assertLess(level.latency_ms["p99"], 100.0)

  def test_summarize_percentiles_of_answers_only(self):
    level = open_loop.summarize(
        [(open_loop.OK, 0.010), (open_loop.OK, 0.030), (open_loop.LATE, 5.0)],
        offered_per_s=3.0,
        duration_s=1.0,
    )
    self.assertEqual(level.goodput_per_s, 2.0)
    self.assertEqual(level.latency_ms["p99"], 30.0)
    self.assertEqual(level.latency_ms["p50"], 10.0)


if __name__ == "__main__":
  absltest.main()
