"""Tests for ServableStateMonitor."""

import threading
import time
import unittest

from tensorflow_serving.core import event_bus
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import servable_state_monitor
from tensorflow_serving.util import status

START = servable_state.ManagerState.START
LOADING = servable_state.ManagerState.LOADING
AVAILABLE = servable_state.ManagerState.AVAILABLE
UNLOADING = servable_state.ManagerState.UNLOADING
END = servable_state.ManagerState.END


def sid(version, name="m"):
  return servable_id.ServableId(name, version)


class MonitorTestBase(unittest.TestCase):

  def setUp(self):
    super().setUp()
    self.bus = event_bus.EventBus()
    self.monitor = servable_state_monitor.ServableStateMonitor(
        self.bus, max_count_log_events=3
    )

  def publish(self, version, state, name="m", health=None):
    self.bus.publish(
        servable_state.ServableState(sid(version, name), state, health)
    )

  def publish_later(self, delay_s, *args, **kwargs):
    timer = threading.Timer(delay_s, self.publish, args, kwargs)
    timer.start()
    self.addCleanup(timer.join)


class StatesTest(MonitorTestBase):

  def test_keeps_every_version_including_end(self):
    error = status.unknown("boom")
    self.publish(1, START)
    self.publish(1, AVAILABLE)
    self.publish(2, START)
    self.publish(2, END, health=error)
    self.publish(3, START)
    self.publish(1, UNLOADING)
    self.publish(1, END)
    self.publish(1, START, name="n")

    self.assertEqual(
        self.monitor.get_state(sid(1)),
        servable_state.ServableState(sid(1), END),
    )
    self.assertEqual(self.monitor.get_state(sid(2)).health, error)
    self.assertIsNone(self.monitor.get_state(sid(9)))
    versions = self.monitor.get_version_states("m")
    self.assertEqual(list(versions), [3, 2, 1])  # Highest first.
    self.assertEqual(versions[3].state.manager_state, START)
    self.assertGreater(versions[3].event_time_micros, 0)
    self.assertEqual(self.monitor.get_version_states("x"), {})
    self.assertEqual(set(self.monitor.get_all_servable_states()), {"m", "n"})

    live = self.monitor.get_live_servable_states()
    self.assertEqual(list(live["m"]), [3])
    self.assertEqual(list(live["n"]), [1])
    self.assertEqual(self.monitor.get_available_servable_names(), set())

  def test_available_names_and_forget(self):
    self.publish(1, AVAILABLE)
    self.publish(2, END)
    self.assertEqual(self.monitor.get_available_servable_names(), {"m"})
    self.monitor.forget_unloaded_servable_states()
    self.assertEqual(list(self.monitor.get_version_states("m")), [1])

  def test_bounded_log(self):
    for state in (START, LOADING, AVAILABLE, UNLOADING):
      self.publish(1, state)
    self.assertEqual(
        [e.state.manager_state for e in self.monitor.get_bounded_log()],
        [LOADING, AVAILABLE, UNLOADING],
    )
    unlogged = servable_state_monitor.ServableStateMonitor(self.bus)
    self.publish(1, END)
    self.assertEqual(unlogged.get_bounded_log(), [])

  def test_close_stops_updates(self):
    self.monitor.close()
    self.publish(1, START)
    self.assertIsNone(self.monitor.get_state(sid(1)))


class WaitTest(MonitorTestBase):

  def test_already_reached(self):
    self.publish(1, AVAILABLE)
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.specific("m", 1)], AVAILABLE, 0
        ),
        (True, {sid(1): AVAILABLE}),
    )

  def test_empty_request_list(self):
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state([], AVAILABLE), (True, {})
    )

  def test_times_out_with_current_states(self):
    self.publish(1, LOADING)
    start = time.monotonic()
    reached, states = self.monitor.wait_until_servables_reach_state(
        [
            servable_request.ServableRequest.latest("m"),
            servable_request.ServableRequest.specific("n", 1),
        ],
        AVAILABLE,
        timeout_s=0.05,
    )
    self.assertGreaterEqual(time.monotonic() - start, 0.05)
    self.assertFalse(reached)
    self.assertEqual(states, {sid(1): LOADING})

  def test_wakes_up_on_event_from_another_thread(self):
    self.publish(1, LOADING)
    self.publish_later(0.02, 1, AVAILABLE)
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.specific("m", 1)],
            AVAILABLE,
            timeout_s=5,
        ),
        (True, {sid(1): AVAILABLE}),
    )

  def test_end_is_terminal_and_reported(self):
    self.publish(1, AVAILABLE, name="good")
    self.publish_later(0.02, 2, END, health=status.unknown("x"))
    reached, states = self.monitor.wait_until_servables_reach_state(
        [
            servable_request.ServableRequest.latest("good"),
            servable_request.ServableRequest.specific("m", 2),
        ],
        AVAILABLE,
        timeout_s=5,
    )
    self.assertFalse(reached)
    self.assertEqual(states, {sid(1, "good"): AVAILABLE, sid(2): END})

  def test_latest_prefers_a_version_in_goal_state(self):
    self.publish(3, END, health=status.unknown("broken"))
    self.publish(2, AVAILABLE)
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.latest("m")], AVAILABLE, 0
        ),
        (True, {sid(2): AVAILABLE}),
    )

  def test_latest_satisfied_by_any_version_ending(self):
    self.publish(1, START)
    self.publish(1, END, health=status.unknown("broken"))
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.latest("m")], AVAILABLE, 0
        ),
        (False, {sid(1): END}),
    )

  def test_notify_when_reached(self):
    calls = []
    self.monitor.notify_when_servables_reach_state(
        [
            servable_request.ServableRequest.specific("m", 1),
            servable_request.ServableRequest.latest("n"),
        ],
        AVAILABLE,
        lambda reached, states: calls.append((reached, states)),
    )
    self.publish(1, AVAILABLE)
    self.assertEqual(calls, [])
    self.publish(4, AVAILABLE, name="n")
    self.publish(5, AVAILABLE, name="n")
    self.assertEqual(
        calls, [(True, {sid(1): AVAILABLE, sid(4, "n"): AVAILABLE})]
    )

  def test_a_forgotten_notification_never_runs(self):
    calls = []
    forget = self.monitor.notify_when_servables_reach_state(
        [servable_request.ServableRequest.specific("m", 1)],
        AVAILABLE,
        lambda reached, states: calls.append(reached),
    )
    forget()
    forget()  # Idempotent.
    self.publish(1, AVAILABLE)
    self.assertEqual(calls, [])

  def test_notify_immediately_if_already_reached(self):
    self.publish(1, UNLOADING)
    calls = []
    self.monitor.notify_when_servables_reach_state(
        [servable_request.ServableRequest.specific("m", 1)],
        UNLOADING,
        lambda reached, states: calls.append(reached),
    )
    self.assertEqual(calls, [True])

  def test_notifier_may_query_the_monitor(self):
    seen = []
    self.monitor.notify_when_servables_reach_state(
        [servable_request.ServableRequest.specific("m", 1)],
        AVAILABLE,
        lambda reached, states: seen.append(self.monitor.get_state(sid(1))),
    )
    self.publish(1, AVAILABLE)
    self.assertEqual(seen, [servable_state.ServableState(sid(1), AVAILABLE)])


if __name__ == "__main__":
  unittest.main()
