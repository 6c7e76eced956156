"""Tests for LoaderHarness: transitions, retries, cancellation, errors."""

import threading
import time
import unittest

from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_id
from tensorflow_serving.core.test_util import fake_loader
from tensorflow_serving.util import status

State = loader_harness.LoaderHarness.State
ID = servable_id.ServableId("m", 1)


def make_harness(loader=None, transitions=None, **kwargs):
  def record(harness, state):
    if transitions is not None:
      transitions.append(state)

  return loader_harness.LoaderHarness(
      ID, loader or fake_loader.FakeLoader(), on_transition=record, **kwargs
  )


def bring_to_ready(harness):
  harness.load_requested()
  harness.load_approved()
  harness.load()


class TransitionTest(unittest.TestCase):

  def test_full_lifecycle_in_order(self):
    transitions = []
    loader = fake_loader.FakeLoader()
    harness = make_harness(loader, transitions)
    self.assertIs(harness.state, State.NEW)
    bring_to_ready(harness)
    self.assertTrue(loader.loaded)
    harness.unload_requested()
    harness.start_quiescing()
    harness.done_quiescing()
    harness.unload()
    self.assertFalse(loader.loaded)
    self.assertEqual(
        transitions,
        [
            State.LOAD_REQUESTED,
            State.LOAD_APPROVED,
            State.LOADING,
            State.READY,
            State.UNLOAD_REQUESTED,
            State.QUIESCING,
            State.QUIESCED,
            State.UNLOADING,
            State.DISABLED,
        ],
    )
    self.assertIsNone(harness.status)

  def test_illegal_transitions_fail_and_keep_state(self):
    harness = make_harness()
    steps = {
        "load_approved": harness.load_approved,
        "load": harness.load,
        "unload_requested": harness.unload_requested,
        "start_quiescing": harness.start_quiescing,
        "done_quiescing": harness.done_quiescing,
        "unload": harness.unload,
    }
    for name, step in steps.items():
      with self.subTest(step=name):
        with self.assertRaises(status.ServingError) as cm:
          step()
        self.assertEqual(cm.exception.code, status.Code.FAILED_PRECONDITION)
        self.assertTrue(cm.exception.message.startswith("Illegal request to"))
        self.assertIn("{name: m version: 1}", cm.exception.message)
        self.assertIs(harness.state, State.NEW)

  def test_duplicate_load_request_fails(self):
    harness = make_harness()
    harness.load_requested()
    with self.assertRaises(status.ServingError) as cm:
      harness.load_requested()
    self.assertEqual(
        cm.exception.message,
        "Illegal request to request load of servable "
        "{name: m version: 1}: it is in state load-requested, "
        "expected new",
    )
    self.assertIs(harness.state, State.LOAD_REQUESTED)

  def test_unload_request_only_when_ready(self):
    harness = make_harness()
    bring_to_ready(harness)
    harness.unload_requested()
    with self.assertRaises(status.ServingError):
      harness.unload_requested()

  def test_error_from_any_state_keeps_first_error(self):
    transitions = []
    harness = make_harness(transitions=transitions)
    harness.load_requested()
    first = status.internal("first")
    harness.error(first)
    harness.error(status.internal("second"))
    self.assertIs(harness.state, State.ERROR)
    self.assertEqual(harness.status, first)
    self.assertEqual(transitions, [State.LOAD_REQUESTED, State.ERROR])
    with self.assertRaises(status.ServingError):
      harness.load_approved()

  def test_failing_hook_does_not_break_the_machine(self):
    def hook(harness, state):
      raise RuntimeError("hook")

    harness = loader_harness.LoaderHarness(
        ID, fake_loader.FakeLoader(), on_transition=hook
    )
    with self.assertLogs("absl", "ERROR"):
      harness.load_requested()
    self.assertIs(harness.state, State.LOAD_REQUESTED)

  def test_unload_exception_is_logged_and_disables(self):
    class BadUnload(fake_loader.FakeLoader):

      def unload(self):
        raise RuntimeError("cannot unload")

    harness = make_harness(BadUnload())
    bring_to_ready(harness)
    harness.unload_requested()
    harness.start_quiescing()
    harness.done_quiescing()
    with self.assertLogs("absl", "ERROR"):
      harness.unload()
    self.assertIs(harness.state, State.DISABLED)

  def test_lifecycle_is_logged_with_upstream_lines(self):
    # Operators (and the integration tests) follow a version through the log.
    logger = "absl"
    harness = make_harness()
    with self.assertLogs(logger, "INFO") as logs:
      bring_to_ready(harness)
      harness.unload_requested()
      harness.start_quiescing()
      harness.done_quiescing()
      harness.unload()
    self.assertEqual(
        [r.getMessage() for r in logs.records],
        [
            "Approving load for servable version {name: m version: 1}",
            "Loading servable version {name: m version: 1}",
            "Successfully loaded servable version {name: m version: 1}",
            "Quiescing servable version {name: m version: 1}",
            "Done quiescing servable version {name: m version: 1}",
            "Unloading servable version {name: m version: 1}",
            "Done unloading servable version {name: m version: 1}",
        ],
    )
    failing = make_harness()
    with self.assertLogs(logger, "INFO") as logs:
      failing.error(status.internal("boom"))
    self.assertEqual(
        [r.getMessage() for r in logs.records],
        [
            "Encountered an error for servable version {name: m version: 1}: "
            "boom"
        ],
    )


class RetryTest(unittest.TestCase):

  def test_succeeds_after_retries(self):
    loader = fake_loader.FakeLoader(fail_times=2)
    harness = make_harness(
        loader, max_num_load_retries=2, load_retry_interval_s=0.001
    )
    with self.assertLogs("absl", "ERROR"):
      bring_to_ready(harness)
    self.assertEqual(loader.load_calls, 3)
    self.assertIs(harness.state, State.READY)

  def test_exhausted_retries_end_in_error_with_last_error(self):
    error = status.data_loss("corrupt")
    loader = fake_loader.FakeLoader(fail_times=float("inf"), error=error)
    harness = make_harness(
        loader, max_num_load_retries=3, load_retry_interval_s=-1
    )
    harness.load_requested()
    harness.load_approved()
    with self.assertLogs("absl", "ERROR"):
      with self.assertRaises(status.ServingError) as cm:
        harness.load()
    self.assertEqual(cm.exception, error)
    self.assertEqual(loader.load_calls, 4)  # 1 + max_num_load_retries.
    self.assertIs(harness.state, State.ERROR)
    self.assertEqual(harness.status, error)

  def test_plain_exceptions_become_unknown(self):
    class Raising(fake_loader.FakeLoader):

      def load(self):
        raise OSError("disk gone")

    harness = make_harness(Raising())
    harness.load_requested()
    harness.load_approved()
    with self.assertLogs("absl", "ERROR"):
      with self.assertRaises(status.ServingError):
        harness.load()
    self.assertEqual(
        harness.status, status.ServingError(status.Code.UNKNOWN, "disk gone")
    )

  def test_cancel_interrupts_retry_backoff(self):
    loader = fake_loader.FakeLoader(fail_times=float("inf"))
    harness = make_harness(
        loader, max_num_load_retries=5, load_retry_interval_s=30.0
    )
    harness.load_requested()
    harness.load_approved()
    result = []

    def run():
      try:
        harness.load()
      except status.ServingError as e:
        result.append(e)

    with self.assertLogs("absl", "ERROR"):
      thread = threading.Thread(target=run)
      thread.start()
      self.assertTrue(loader.load_started.wait(5))
      start = time.monotonic()
      harness.cancel_load_retries()
      thread.join(5)
    self.assertFalse(thread.is_alive())
    self.assertLess(time.monotonic() - start, 5)
    self.assertEqual(loader.load_calls, 1)
    self.assertEqual(result, [status.unknown("load failed")])
    self.assertIs(harness.state, State.ERROR)
    self.assertTrue(harness.load_retries_cancelled)

  def test_cancel_before_first_attempt(self):
    loader = fake_loader.FakeLoader()
    harness = make_harness(loader)
    harness.load_requested()
    harness.load_approved()
    harness.cancel_load_retries()
    with self.assertRaises(status.ServingError) as cm:
      harness.load()
    self.assertEqual(cm.exception.code, status.Code.CANCELLED)
    self.assertEqual(
        cm.exception.message, "Load cancelled before we could try to load."
    )
    self.assertEqual(loader.load_calls, 0)
    self.assertIs(harness.state, State.ERROR)


if __name__ == "__main__":
  unittest.main()
