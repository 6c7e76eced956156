"""Tests for BasicManager: lifecycle, handles, resources, events, threads."""

import threading
import time
import unittest

from tensorflow_serving.core import basic_manager
from tensorflow_serving.core import event_bus
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core.test_util import fake_loader
from tensorflow_serving.core.test_util import servable_state_recorder
from tensorflow_serving.resources import resource_tracker
from tensorflow_serving.resources import resources
from tensorflow_serving.util import status

State = loader_harness.LoaderHarness.State
LIFECYCLE = [
    servable_state.ManagerState.START,
    servable_state.ManagerState.LOADING,
    servable_state.ManagerState.AVAILABLE,
    servable_state.ManagerState.UNLOADING,
    servable_state.ManagerState.END,
]


def sid(version, name="m"):
  return servable_id_lib.ServableId(name, version)


def ram(n):
  return resources.ResourceAllocation(ram_bytes=n)


def wait_until(predicate, timeout_s=5.0):
  deadline = time.monotonic() + timeout_s
  while not predicate():
    if time.monotonic() > deadline:
      return False
    time.sleep(0.001)
  return True


class Done:
  """A done callback that records its result and can be waited on."""

  def __init__(self):
    self._event = threading.Event()
    self.error = None

  def __call__(self, error):
    self.error = error
    self._event.set()

  def wait(self, timeout_s=5.0):
    if not self._event.wait(timeout_s):
      raise AssertionError("done callback not called")
    return self.error

  @property
  def called(self):
    return self._event.is_set()


class BasicManagerTestBase(unittest.TestCase):

  def make_manager(self, **kwargs):
    self.bus = event_bus.EventBus()
    self.recorder = servable_state_recorder.ServableStateRecorder(self.bus)
    kwargs.setdefault("max_num_load_retries", 0)
    kwargs.setdefault("load_retry_interval_s", 0)
    manager = basic_manager.BasicManager(event_bus=self.bus, **kwargs)
    self.addCleanup(manager.close)
    return manager

  def manage(self, manager, version, loader=None, name="m"):
    loader = loader or fake_loader.FakeLoader()
    manager.manage_servable(
        servable_data.ServableData.of(sid(version, name), loader)
    )
    return loader

  def load(self, manager, version, name="m"):
    done = Done()
    manager.load_servable(sid(version, name), done)
    return done.wait()

  def unload(self, manager, version, name="m"):
    done = Done()
    manager.unload_servable(sid(version, name), done)
    return done.wait()

  def state(self, manager, version, name="m"):
    return manager.get_managed_servable_state_snapshot(sid(version, name)).state


class LifecycleTest(BasicManagerTestBase):

  def test_load_serve_unload(self):
    manager = self.make_manager()
    loader = self.manage(manager, 1)
    self.assertIs(self.state(manager, 1), State.NEW)
    self.assertIsNone(self.load(manager, 1))
    self.assertIs(self.state(manager, 1), State.READY)
    with manager.get_servable_handle(
        servable_request.ServableRequest.latest("m")
    ) as handle:
      self.assertEqual(handle.id, sid(1))
      self.assertIs(handle.servable, loader)
    self.assertIsNone(self.unload(manager, 1))
    self.assertIs(self.state(manager, 1), State.DISABLED)
    self.assertEqual((loader.load_calls, loader.unload_calls), (1, 1))
    self.assertEqual(self.recorder.states(sid(1)), LIFECYCLE)
    self.assertTrue(all(e.health is None for e in self.recorder.events))

  def test_not_found_messages_are_upstreams(self):
    manager = self.make_manager()
    cases = {
        servable_request.ServableRequest.latest(
            "m"
        ): "Servable not found for request: Latest(m)",
        servable_request.ServableRequest.specific(
            "m", 3
        ): "Servable not found for request: Specific(m, 3)",
        servable_request.ServableRequest.earliest(
            "m"
        ): "Servable not found for request: Earliest(m)",
    }
    for request, message in cases.items():
      with self.assertRaises(status.ServingError) as cm:
        manager.get_servable_handle(request)
      self.assertEqual(cm.exception, status.not_found(message))
    # Managed but not yet loaded is still not found.
    self.manage(manager, 3)
    with self.assertRaises(status.ServingError) as cm:
      manager.get_servable_handle(
          servable_request.ServableRequest.specific("m", 3)
      )
    self.assertEqual(
        cm.exception.message, "Servable not found for request: Specific(m, 3)"
    )

  def test_latest_earliest_specific_pick_available_versions(self):
    manager = self.make_manager()
    for version in (1, 2, 3, 4):
      self.manage(manager, version)
    for version in (1, 2, 3):
      self.load(manager, version)
    expected = {
        servable_request.ServableRequest.latest("m"): sid(3),
        servable_request.ServableRequest.earliest("m"): sid(1),
        servable_request.ServableRequest.specific("m", 2): sid(2),
    }
    for request, servable_id in expected.items():
      with manager.get_servable_handle(request) as handle:
        self.assertEqual(handle.id, servable_id)
    self.unload(manager, 3)
    self.unload(manager, 1)
    self.assertEqual(manager.list_available_servable_ids(), [sid(2)])
    handles = manager.get_available_servable_handles()
    self.assertEqual(list(handles), [sid(2)])
    for handle in handles.values():
      handle.release()

  def test_manage_twice_fails(self):
    manager = self.make_manager()
    self.manage(manager, 1)
    with self.assertRaises(status.ServingError) as cm:
      self.manage(manager, 1)
    self.assertEqual(cm.exception.code, status.Code.FAILED_PRECONDITION)
    self.assertEqual(
        cm.exception.message,
        "This servable is already being managed: " "{name: m version: 1}",
    )

  def test_stop_managing_only_new_or_finished(self):
    manager = self.make_manager()
    self.manage(manager, 1)
    self.manage(manager, 2)
    self.load(manager, 2)
    with self.assertRaises(status.ServingError) as cm:
      manager.stop_managing_servable(sid(2))
    self.assertEqual(cm.exception.code, status.Code.FAILED_PRECONDITION)
    manager.stop_managing_servable(sid(1))  # NEW: allowed, gets an END.
    self.assertEqual(
        self.recorder.states(sid(1)),
        [servable_state.ManagerState.START, servable_state.ManagerState.END],
    )
    self.unload(manager, 2)
    manager.stop_managing_servable(sid(2))
    self.assertEqual(manager.get_managed_servable_names(), [])
    with self.assertRaises(status.ServingError) as cm:
      manager.stop_managing_servable(sid(2))
    self.assertEqual(
        cm.exception.message,
        "This servable is not being managed: {name: m version: 2}",
    )

  def test_snapshots_and_additional_state(self):
    manager = self.make_manager()
    manager.manage_servable(
        servable_data.ServableData.of(sid(2), fake_loader.FakeLoader()), "two"
    )
    manager.manage_servable(
        servable_data.ServableData.of(sid(1), fake_loader.FakeLoader()), "one"
    )
    self.manage(manager, 1, name="n")
    self.assertEqual(manager.get_managed_servable_names(), ["m", "n"])
    snapshots = manager.get_managed_servable_state_snapshots("m")
    self.assertEqual(
        [(s.id, s.state, s.additional_state) for s in snapshots],
        [(sid(1), State.NEW, "one"), (sid(2), State.NEW, "two")],
    )
    self.assertEqual(manager.get_additional_servable_state(sid(2)), "two")
    self.assertIsNone(manager.get_managed_servable_state_snapshot(sid(9)))

  def test_duplicate_or_unknown_requests_fail_through_callback(self):
    manager = self.make_manager()
    self.manage(manager, 1)
    self.load(manager, 1)
    error = self.load(manager, 1)
    self.assertEqual(error.code, status.Code.FAILED_PRECONDITION)
    error = self.load(manager, 7)
    self.assertEqual(
        error,
        status.not_found(
            "This servable is not being managed by the manager: "
            "{name: m version: 7}"
        ),
    )
    self.manage(manager, 2)
    self.assertEqual(
        self.unload(manager, 2).code, status.Code.FAILED_PRECONDITION
    )


class FailureTest(BasicManagerTestBase):

  def test_failed_load_ends_with_error(self):
    manager = self.make_manager(max_num_load_retries=2, num_load_threads=1)
    error = status.data_loss("bad checkpoint")
    loader = self.manage(
        manager, 1, fake_loader.FakeLoader(fail_times=float("inf"), error=error)
    )
    with self.assertLogs("absl", "ERROR"):
      self.assertEqual(self.load(manager, 1), error)
    self.assertEqual(loader.load_calls, 3)
    self.assertIs(self.state(manager, 1), State.ERROR)
    # Each failed attempt that is retried is a LOADING event carrying its
    # error; the last failure ends the version with the error itself.
    events = [e for e in self.recorder.events if e.id == sid(1)]
    self.assertEqual(
        [(e.manager_state, e.health) for e in events],
        [
            (servable_state.ManagerState.START, None),
            (servable_state.ManagerState.LOADING, None),
            (
                servable_state.ManagerState.LOADING,
                status.data_loss(
                    "Load attempt 1 of 3 failed, retrying in 0 s: "
                    "DATA_LOSS: bad checkpoint"
                ),
            ),
            (
                servable_state.ManagerState.LOADING,
                status.data_loss(
                    "Load attempt 2 of 3 failed, retrying in 0 s: "
                    "DATA_LOSS: bad checkpoint"
                ),
            ),
            (servable_state.ManagerState.END, error),
        ],
    )
    # An errored version cannot be loaded again; its error is the answer.
    self.assertEqual(self.load(manager, 1), error)
    with self.assertRaises(status.ServingError):
      manager.get_servable_handle(servable_request.ServableRequest.latest("m"))
    manager.stop_managing_servable(sid(1))

  def test_serial_loads_say_that_a_retry_holds_the_others(self):
    manager = self.make_manager(max_num_load_retries=1, num_load_threads=0)
    self.manage(manager, 1, fake_loader.FakeLoader(fail_times=1))
    with self.assertLogs("absl", "WARNING") as logs:
      self.assertIsNone(self.load(manager, 1))
    retry = [
        e
        for e in self.recorder.events
        if e.id == sid(1) and e.health is not None
    ]
    self.assertEqual(len(retry), 1)
    self.assertIn(
        "other versions wait until this load ends", retry[0].health.message
    )
    self.assertTrue(
        any("other versions' loads wait" in line for line in logs.output)
    )

  def test_retried_load_that_succeeds_ends_available_and_healthy(self):
    manager = self.make_manager(max_num_load_retries=2)
    self.manage(manager, 1, fake_loader.FakeLoader(fail_times=1))
    with self.assertLogs("absl", "ERROR"):
      self.assertIsNone(self.load(manager, 1))
    last = self.recorder.last(sid(1))
    self.assertEqual(last.manager_state, servable_state.ManagerState.AVAILABLE)
    self.assertIsNone(last.health)

  def test_errored_servable_data_is_managed_in_error(self):
    manager = self.make_manager()
    error = status.invalid_argument("No platform found for model m")
    manager.manage_servable(servable_data.ServableData.failed(sid(1), error))
    self.assertIs(self.state(manager, 1), State.ERROR)
    self.assertEqual(
        self.recorder.states(sid(1)), [servable_state.ManagerState.END]
    )
    self.assertEqual(self.recorder.last(sid(1)).health, error)

  def test_cancelled_retry(self):
    manager = self.make_manager(
        num_load_threads=1, max_num_load_retries=5, load_retry_interval_s=30
    )
    loader = self.manage(
        manager, 1, fake_loader.FakeLoader(fail_times=float("inf"))
    )
    done = Done()
    with self.assertLogs("absl", "ERROR"):
      manager.load_servable(sid(1), done)
      self.assertTrue(loader.load_started.wait(5))
      manager.cancel_load_servable_retry(sid(1))
      self.assertEqual(done.wait(), status.unknown("load failed"))
    self.assertEqual(loader.load_calls, 1)


class HandleTest(BasicManagerTestBase):

  def test_unload_waits_for_outstanding_handle(self):
    manager = self.make_manager(num_unload_threads=1)
    loader = self.manage(manager, 1)
    self.load(manager, 1)
    handle = manager.get_servable_handle(
        servable_request.ServableRequest.latest("m")
    )
    done = Done()
    manager.unload_servable(sid(1), done)
    self.assertTrue(
        self.recorder.wait_for(sid(1), servable_state.ManagerState.UNLOADING)
    )

    def withdrawn():
      try:
        manager.get_servable_handle(
            servable_request.ServableRequest.latest("m")
        ).release()
        return False
      except status.ServingError as e:
        return e.code == status.Code.NOT_FOUND

    self.assertTrue(wait_until(withdrawn))
    time.sleep(0.02)  # Give a wrongly eager unload time to happen.
    self.assertFalse(done.called)
    self.assertEqual(loader.unload_calls, 0)
    self.assertIs(self.state(manager, 1), State.QUIESCING)
    self.assertTrue(handle.servable.loaded)
    handle.release()
    self.assertIsNone(done.wait())
    self.assertEqual(loader.unload_calls, 1)
    self.assertEqual(self.recorder.states(sid(1)), LIFECYCLE)

  def test_dropped_handle_releases_itself(self):
    manager = self.make_manager()
    self.manage(manager, 1)
    self.load(manager, 1)
    handle = manager.get_servable_handle(
        servable_request.ServableRequest.latest("m")
    )
    del handle  # Never released explicitly.
    self.assertIsNone(self.unload(manager, 1))

  def test_concurrent_loads_unloads_and_requests(self):
    manager = self.make_manager(num_load_threads=4, num_unload_threads=4)
    loaders = {v: self.manage(manager, v) for v in range(1, 13)}
    stop = threading.Event()
    problems = []
    served = []

    def reader(request):
      count = 0
      while not stop.is_set():
        try:
          with manager.get_servable_handle(request) as handle:
            if not handle.servable.loaded:
              problems.append(f"{handle.id} served while not loaded")
            time.sleep(0)
            if not handle.servable.loaded:
              problems.append(f"{handle.id} unloaded while held")
            count += 1
        except status.ServingError as e:
          if e.code != status.Code.NOT_FOUND:
            problems.append(repr(e))
      served.append(count)

    readers = [
        threading.Thread(target=reader, args=(request,))
        for request in (
            servable_request.ServableRequest.latest("m"),
            servable_request.ServableRequest.earliest("m"),
            servable_request.ServableRequest.specific("m", 5),
            servable_request.ServableRequest.latest("m"),
        )
    ]
    for t in readers:
      t.start()
    load_dones = {v: Done() for v in loaders}
    for v, done in load_dones.items():
      manager.load_servable(sid(v), done)
    for done in load_dones.values():
      self.assertIsNone(done.wait())
    self.assertEqual(len(manager.list_available_servable_ids()), 12)
    unload_dones = {v: Done() for v in loaders}
    for v, done in unload_dones.items():
      manager.unload_servable(sid(v), done)
    for done in unload_dones.values():
      self.assertIsNone(done.wait())
    stop.set()
    for t in readers:
      t.join()
    self.assertEqual(problems, [])
    self.assertGreater(sum(served), 0)
    self.assertEqual(manager.list_available_servable_ids(), [])
    for v, loader in loaders.items():
      self.assertEqual((loader.load_calls, loader.unload_calls), (1, 1))
      self.assertEqual(self.recorder.states(sid(v)), LIFECYCLE)


class EventOrderTest(BasicManagerTestBase):

  def test_available_is_servable_and_end_is_not(self):
    manager = self.make_manager()
    observed = []

    def on_event(event):
      try:
        manager.get_servable_handle(
            servable_request.ServableRequest.from_id(event.id)
        ).release()
        observed.append((event.manager_state, True))
      except status.ServingError:
        observed.append((event.manager_state, False))

    self.bus.subscribe(on_event)
    self.manage(manager, 1)
    self.load(manager, 1)
    self.unload(manager, 1)
    self.assertEqual(
        observed,
        [
            (servable_state.ManagerState.START, False),
            (servable_state.ManagerState.LOADING, False),
            (servable_state.ManagerState.AVAILABLE, True),
            (servable_state.ManagerState.UNLOADING, True),
            (servable_state.ManagerState.END, False),
        ],
    )

  def test_subscriber_may_drive_the_manager(self):
    manager = self.make_manager()
    self.manage(manager, 1)
    self.manage(manager, 2)
    chained = Done()

    def on_event(event):
      if (
          event.id == sid(1)
          and event.manager_state is servable_state.ManagerState.AVAILABLE
      ):
        manager.load_servable(sid(2), chained)

    self.bus.subscribe(on_event)
    self.load(manager, 1)
    self.assertIsNone(chained.wait())
    self.assertEqual(
        [e.manager_state for e in self.recorder.events],
        [
            servable_state.ManagerState.START,
            servable_state.ManagerState.START,
            servable_state.ManagerState.LOADING,
            servable_state.ManagerState.AVAILABLE,
            servable_state.ManagerState.LOADING,
            servable_state.ManagerState.AVAILABLE,
        ],
    )

  def test_events_from_a_callback_do_not_overtake_the_current_one(self):
    self.bus = event_bus.EventBus()
    manager = basic_manager.BasicManager(event_bus=self.bus)
    self.addCleanup(manager.close)

    def unload_when_available(event):
      if event.manager_state is servable_state.ManagerState.AVAILABLE:
        manager.unload_servable(event.id)

    self.bus.subscribe(unload_when_available)  # Runs first...
    later = servable_state_recorder.ServableStateRecorder(
        self.bus
    )  # ...this one second.
    self.manage(manager, 1)
    self.load(manager, 1)
    self.assertEqual(later.states(sid(1)), LIFECYCLE)


class ResourceTest(BasicManagerTestBase):

  def test_loads_that_fit_then_insufficient_resources(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    manager = self.make_manager(resource_tracker=tracker)
    self.manage(manager, 1, fake_loader.FakeLoader(estimate=ram(6)))
    self.manage(manager, 2, fake_loader.FakeLoader(estimate=ram(4)))
    big = self.manage(manager, 3, fake_loader.FakeLoader(estimate=ram(1)))
    self.assertIsNone(self.load(manager, 1))
    self.assertIsNone(self.load(manager, 2))
    self.assertEqual(tracker.used, ram(10))
    with self.assertLogs("absl", "WARNING"):
      error = self.load(manager, 3)
    expected = status.resource_exhausted(
        "Insufficient resources to load servable {name: m version: 3}"
    )
    self.assertEqual(error, expected)
    self.assertEqual(big.load_calls, 0)
    self.assertIs(self.state(manager, 3), State.ERROR)
    self.assertEqual(
        self.recorder.states(sid(3)),
        [servable_state.ManagerState.START, servable_state.ManagerState.END],
    )
    self.assertEqual(self.recorder.last(sid(3)).health, expected)
    self.unload(manager, 1)
    self.assertEqual(tracker.used, ram(4))

  def test_load_waits_for_in_flight_unload(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    manager = self.make_manager(
        resource_tracker=tracker, num_load_threads=1, num_unload_threads=1
    )
    self.manage(manager, 1, fake_loader.FakeLoader(estimate=ram(10)))
    new = self.manage(manager, 2, fake_loader.FakeLoader(estimate=ram(10)))
    self.load(manager, 1)
    handle = manager.get_servable_handle(
        servable_request.ServableRequest.latest("m")
    )
    unloaded = Done()
    manager.unload_servable(sid(1), unloaded)
    self.assertTrue(
        wait_until(lambda: self.state(manager, 1) is State.QUIESCING)
    )
    loaded = Done()
    manager.load_servable(sid(2), loaded)
    time.sleep(0.05)  # The load would fail right away if it did not wait.
    self.assertFalse(loaded.called)
    self.assertIs(self.state(manager, 2), State.LOAD_REQUESTED)
    self.assertEqual(new.load_calls, 0)
    handle.release()
    self.assertIsNone(unloaded.wait())
    self.assertIsNone(loaded.wait())
    self.assertEqual(manager.list_available_servable_ids(), [sid(2)])
    self.assertEqual(tracker.used, ram(10))

  def test_failed_load_releases_its_reservation(self):
    tracker = resource_tracker.ResourceTracker(ram(10))
    manager = self.make_manager(resource_tracker=tracker)
    self.manage(
        manager,
        1,
        fake_loader.FakeLoader(estimate=ram(10), fail_times=float("inf")),
    )
    with self.assertLogs("absl", "ERROR"):
      self.assertIsNotNone(self.load(manager, 1))
    self.assertEqual(tracker.used, ram(0))

  def test_estimate_failure_is_internal_error(self):
    manager = self.make_manager(
        resource_tracker=resource_tracker.ResourceTracker(ram(10))
    )
    self.manage(
        manager, 1, fake_loader.FakeLoader(estimate_error=OSError("no dir"))
    )
    with self.assertLogs("absl", "WARNING"):
      error = self.load(manager, 1)
    self.assertEqual(
        error,
        status.internal(
            "Error while attempting to reserve resources to load servable "
            "{name: m version: 1}: no dir"
        ),
    )


class ThreadsTest(BasicManagerTestBase):

  def test_set_num_load_threads_allows_parallel_loads(self):
    manager = self.make_manager()
    self.assertEqual(manager.num_load_threads, 0)
    manager.set_num_load_threads(2)
    self.assertEqual(manager.num_load_threads, 2)
    loaders = [
        self.manage(manager, v, fake_loader.FakeLoader(block_load=True))
        for v in (1, 2)
    ]
    dones = [Done(), Done()]
    for v, done in zip((1, 2), dones):
      manager.load_servable(sid(v), done)
    for loader in loaders:  # Both run at once on the 2-thread pool.
      self.assertTrue(loader.load_started.wait(5))
    for loader in loaders:
      loader.allow_load.set()
    manager.set_num_load_threads(0)  # Waits for the old pool to drain.
    self.assertTrue(all(d.called and d.error is None for d in dones))

  def test_close_unloads_everything(self):
    manager = self.make_manager(num_load_threads=2)
    loaders = [self.manage(manager, v) for v in (1, 2)]
    for v in (1, 2):
      self.load(manager, v)
    manager.close()
    self.assertTrue(all(loader.unload_calls == 1 for loader in loaders))
    self.assertEqual(self.recorder.states(sid(2)), LIFECYCLE)
    self.assertEqual(
        self.load(manager, 1).code, status.Code.FAILED_PRECONDITION
    )
    manager.close()  # Idempotent.


if __name__ == "__main__":
  unittest.main()
