"""Tests for EventBus."""

import threading
import unittest

from tensorflow_serving.core import event_bus


class EventBusTest(unittest.TestCase):

  def test_delivers_to_all_subscribers_in_publisher_thread(self):
    bus = event_bus.EventBus()
    seen = []
    bus.subscribe(lambda e: seen.append(("a", e, threading.get_ident())))
    bus.subscribe(lambda e: seen.append(("b", e, threading.get_ident())))
    bus.publish(1)
    me = threading.get_ident()
    self.assertEqual(seen, [("a", 1, me), ("b", 1, me)])

  def test_cancel_stops_delivery_and_is_idempotent(self):
    bus = event_bus.EventBus()
    seen = []
    subscription = bus.subscribe(seen.append)
    bus.publish(1)
    subscription.cancel()
    subscription.cancel()
    bus.publish(2)
    self.assertEqual(seen, [1])
    with bus.subscribe(seen.append):
      bus.publish(3)
    bus.publish(4)
    self.assertEqual(seen, [1, 3])

  def test_failing_subscriber_does_not_block_others(self):
    bus = event_bus.EventBus()
    seen = []

    def boom(_):
      raise RuntimeError("boom")

    bus.subscribe(boom)
    bus.subscribe(seen.append)
    with self.assertLogs("absl", "ERROR"):
      bus.publish("e")
    self.assertEqual(seen, ["e"])

  def test_callback_may_publish_and_cancel_reentrantly(self):
    bus = event_bus.EventBus()
    seen = []
    subscription = None

    def callback(event):
      seen.append(event)
      if event == 1:
        bus.publish(2)
        subscription.cancel()

    subscription = bus.subscribe(callback)
    bus.publish(1)
    bus.publish(3)
    self.assertEqual(seen, [1, 2])

  def test_concurrent_publish_and_subscribe(self):
    bus = event_bus.EventBus()
    counts = []
    lock = threading.Lock()

    def publisher():
      for i in range(200):
        bus.publish(i)

    def subscriber():
      for _ in range(20):
        bus.subscribe(lambda e: None).cancel()
      local = []
      bus.subscribe(local.append)
      with lock:
        counts.append(local)

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    threads += [threading.Thread(target=subscriber) for _ in range(4)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    bus.publish("final")
    for local in counts:
      self.assertEqual(local[-1], "final")


if __name__ == "__main__":
  unittest.main()
