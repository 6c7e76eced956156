"""Tests for ServingMap lookups and ServingEntry/ServableHandle ref-counting."""

import threading
import time
import unittest

from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import serving_map
from tensorflow_serving.util import status


def entry(name, version):
  return serving_map.ServingEntry(
      servable_id.ServableId(name, version), f"{name}:{version}"
  )


class ServingMapTest(unittest.TestCase):

  def test_resolves_latest_earliest_specific(self):
    serving = serving_map.ServingMap()
    for e in (entry("m", 2), entry("m", 5), entry("m", 3), entry("n", 1)):
      serving = serving.with_entry(e)
    self.assertEqual(
        serving.find(servable_request.ServableRequest.latest("m")).servable,
        "m:5",
    )
    self.assertEqual(
        serving.find(servable_request.ServableRequest.earliest("m")).servable,
        "m:2",
    )
    self.assertEqual(
        serving.find(
            servable_request.ServableRequest.specific("m", 3)
        ).servable,
        "m:3",
    )
    self.assertIsNone(
        serving.find(servable_request.ServableRequest.specific("m", 4))
    )
    self.assertIsNone(
        serving.find(servable_request.ServableRequest.latest("x"))
    )
    self.assertEqual(
        [e.id for e in serving.entries()],
        [
            servable_id.ServableId("m", 2),
            servable_id.ServableId("m", 3),
            servable_id.ServableId("m", 5),
            servable_id.ServableId("n", 1),
        ],
    )

  def test_updates_are_copies(self):
    before = serving_map.ServingMap().with_entry(entry("m", 1))
    after = before.with_entry(entry("m", 2)).without(
        servable_id.ServableId("m", 1)
    )
    self.assertEqual(
        before.find(servable_request.ServableRequest.latest("m")).servable,
        "m:1",
    )
    self.assertEqual(
        after.find(servable_request.ServableRequest.earliest("m")).servable,
        "m:2",
    )
    self.assertIsNone(
        after.without(servable_id.ServableId("m", 2)).find(
            servable_request.ServableRequest.latest("m")
        )
    )
    self.assertIs(after.without(servable_id.ServableId("m", 9)), after)


class HandleTest(unittest.TestCase):

  def test_context_manager_releases_once(self):
    e = entry("m", 1)
    with e.acquire() as handle:
      self.assertEqual(handle.id, servable_id.ServableId("m", 1))
      self.assertEqual(handle.servable, "m:1")
      self.assertEqual(e.ref_count, 1)
    self.assertEqual(e.ref_count, 0)
    handle.release()
    self.assertEqual(e.ref_count, 0)
    with self.assertRaises(status.ServingError) as cm:
      _ = handle.servable
    self.assertEqual(cm.exception.code, status.Code.FAILED_PRECONDITION)

  def test_ownerless_handle(self):
    handle = servable_handle.ServableHandle(servable_id.ServableId("m", 1), "x")
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
