"""Tests for ServingMap lookups and ServingEntry/ServableHandle ref-counting."""

import threading
import time
import unittest

from tensorflow_serving.core.servable_handle import ServableHandle
from tensorflow_serving.core.servable_id import ServableId
from tensorflow_serving.core.servable_request import ServableRequest
from tensorflow_serving.core.serving_map import ServingEntry
from tensorflow_serving.core.serving_map import ServingMap
from tensorflow_serving.util.status import Code
from tensorflow_serving.util.status import ServingError


def entry(name, version):
  return ServingEntry(ServableId(name, version), f"{name}:{version}")


class ServingMapTest(unittest.TestCase):

  def test_resolves_latest_earliest_specific(self):
    serving = ServingMap()
    for e in (entry("m", 2), entry("m", 5), entry("m", 3), entry("n", 1)):
      serving = serving.with_entry(e)
    self.assertEqual(serving.find(ServableRequest.latest("m")).servable, "m:5")
    self.assertEqual(
        serving.find(ServableRequest.earliest("m")).servable, "m:2"
    )
    self.assertEqual(
        serving.find(ServableRequest.specific("m", 3)).servable, "m:3"
    )
    self.assertIsNone(serving.find(ServableRequest.specific("m", 4)))
    self.assertIsNone(serving.find(ServableRequest.latest("x")))
    self.assertEqual(
        [e.id for e in serving.entries()],
        [
            ServableId("m", 2),
            ServableId("m", 3),
            ServableId("m", 5),
            ServableId("n", 1),
        ],
    )

  def test_updates_are_copies(self):
    before = ServingMap().with_entry(entry("m", 1))
    after = before.with_entry(entry("m", 2)).without(ServableId("m", 1))
    self.assertEqual(before.find(ServableRequest.latest("m")).servable, "m:1")
    self.assertEqual(after.find(ServableRequest.earliest("m")).servable, "m:2")
    self.assertIsNone(
        after.without(ServableId("m", 2)).find(ServableRequest.latest("m"))
    )
    self.assertIs(after.without(ServableId("m", 9)), after)


class HandleTest(unittest.TestCase):

  def test_context_manager_releases_once(self):
    e = entry("m", 1)
    with e.acquire() as handle:
      self.assertEqual(handle.id, ServableId("m", 1))
      self.assertEqual(handle.servable, "m:1")
      self.assertEqual(e.ref_count, 1)
    self.assertEqual(e.ref_count, 0)
    handle.release()
    self.assertEqual(e.ref_count, 0)
    with self.assertRaises(ServingError) as cm:
      _ = handle.servable
    self.assertEqual(cm.exception.code, Code.FAILED_PRECONDITION)

  def test_ownerless_handle(self):
    handle = ServableHandle(ServableId("m", 1), "x")
    with handle:
      self.assertEqual(handle.servable, "x")
    self.assertTrue(handle.released)

  def test_close_waits_for_handles_and_refuses_new_ones(self):
    e = entry("m", 1)
    handle = e.acquire()
    closed = threading.Event()
    thread = threading.Thread(target=lambda: (e.close_and_wait(), closed.set()))
    thread.start()
    deadline = time.monotonic() + 5
    while not e.closed and time.monotonic() < deadline:
      time.sleep(0.001)
    self.assertIsNone(e.acquire())
    self.assertFalse(closed.is_set())  # Still waiting for our handle.
    handle.release()
    self.assertTrue(closed.wait(5))
    thread.join()
    self.assertIsNone(e.acquire())

  def test_concurrent_acquire_release_balances(self):
    e = entry("m", 1)

    def worker():
      for _ in range(2000):
        with e.acquire():
          pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    self.assertEqual(e.ref_count, 0)


if __name__ == "__main__":
  unittest.main()
