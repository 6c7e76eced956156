"""Tests for ResourceTracker admission."""

import threading
import unittest

from tensorflow_serving.resources import resource_tracker
from tensorflow_serving.resources import resources


def ram(n: int) -> resources.ResourceAllocation:
  return resources.ResourceAllocation(ram_bytes=n)


class ResourceTrackerTest(unittest.TestCase):

  def test_unlimited_without_total(self):
    tracker = resource_tracker.ResourceTracker(None)
    self.assertTrue(tracker.reserve_if_possible("a", ram(1 << 60)))
    self.assertEqual(tracker.used, ram(1 << 60))

  def test_reserve_until_full_then_release(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    self.assertTrue(tracker.reserve_if_possible("a", ram(6)))
    self.assertFalse(tracker.reserve_if_possible("b", ram(5)))
    self.assertTrue(tracker.reserve_if_possible("b", ram(4)))
    self.assertEqual(tracker.used, ram(10))
    tracker.release("a")
    tracker.release("a")  # Second release is a no-op.
    self.assertEqual(tracker.used, ram(4))
    self.assertIsNone(tracker.reservation("a"))
    self.assertTrue(tracker.reserve_if_possible("c", ram(6)))

  def test_rereserve_replaces(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    self.assertTrue(tracker.reserve_if_possible("a", ram(8)))
    self.assertTrue(tracker.reserve_if_possible("a", ram(10)))
    self.assertEqual(tracker.used, ram(10))
    self.assertFalse(tracker.reserve_if_possible("a", ram(11)))
    self.assertEqual(tracker.reservation("a"), ram(10))

  def test_unlisted_kinds_are_unmetered_but_zero_budget_is_not(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    self.assertTrue(
        tracker.reserve_if_possible("a", resources.ResourceAllocation(gpu=5))
    )
    zero = resource_tracker.ResourceTracker(ram(0))
    self.assertFalse(zero.reserve_if_possible("a", ram(1)))
    self.assertTrue(
        zero.reserve_if_possible("b", resources.ResourceAllocation())
    )

  def test_concurrent_reservations_never_exceed_total(self):
    tracker = resource_tracker.ResourceTracker(ram(100))
    granted = []
    lock = threading.Lock()

    def worker(i):
      if tracker.reserve_if_possible(i, ram(7)):
        with lock:
          granted.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    self.assertEqual(len(granted), 14)
    self.assertEqual(tracker.used, ram(98))


if __name__ == "__main__":
  unittest.main()
