"""Tests for AspiredVersionsManager with both policies and fake loaders."""

import threading
import unittest

from tensorflow_serving.core import aspired_versions_manager
from tensorflow_serving.core import availability_preserving_policy
from tensorflow_serving.core import event_bus
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import resource_preserving_policy
from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import servable_state_monitor
from tensorflow_serving.core.test_util import fake_loader
from tensorflow_serving.core.test_util import servable_state_recorder
from tensorflow_serving.resources import resource_tracker
from tensorflow_serving.resources import resources
from tensorflow_serving.util import status

State = loader_harness.LoaderHarness.State
AVAILABLE = servable_state.ManagerState.AVAILABLE
END = servable_state.ManagerState.END
LATEST = servable_request.ServableRequest.latest("m")
CORE_LOG = "absl"  # The core logs through absl logging.


def sid(version, name="m"):
  return servable_id_lib.ServableId(name, version)


class AspiredVersionsManagerTestBase(unittest.TestCase):

  def make_manager(self, policy=None, **kwargs):
    self.bus = event_bus.EventBus()
    self.recorder = servable_state_recorder.ServableStateRecorder(self.bus)
    self.monitor = servable_state_monitor.ServableStateMonitor(self.bus)
    kwargs.setdefault("manage_state_interval_s", 0)  # Tests tick by hand.
    kwargs.setdefault("max_num_load_retries", 0)
    kwargs.setdefault("load_retry_interval_s", 0)
    manager = aspired_versions_manager.AspiredVersionsManager(
        policy or availability_preserving_policy.AvailabilityPreservingPolicy(),
        event_bus=self.bus,
        **kwargs,
    )
    self.addCleanup(manager.stop)
    self.manager = manager
    return manager

  def aspire(self, loaders, name="m"):
    """Sends the aspired set {version: loader or ServingError}."""
    versions = []
    for version, loader in loaders.items():
      if isinstance(loader, status.ServingError):
        versions.append(
            servable_data.ServableData.failed(sid(version, name), loader)
        )
      else:
        versions.append(
            servable_data.ServableData.of(sid(version, name), loader)
        )
    self.manager.get_aspired_versions_callback()(name, versions)

  def tick(self, times=1):
    for _ in range(times):
      self.manager._manage_state()  # pylint: disable=protected-access

  def serving_version(self, request=LATEST):
    try:
      with self.manager.get_servable_handle(request) as handle:
        return handle.id.version
    except status.ServingError:
      return None

  def managed_versions(self, name="m"):
    return {
        s.id.version: s.state
        for s in (
            self.manager.basic_manager.get_managed_servable_state_snapshots(
                name
            )
        )
    }

  def event_index(self, servable_id, state):
    for i, event in enumerate(self.recorder.events):
      if event.id == servable_id and event.manager_state is state:
        return i
    raise AssertionError(f"no {state} event for {servable_id}")


class AvailabilityPreservingTest(AspiredVersionsManagerTestBase):

  def test_new_version_loads_while_old_serves_then_old_unloads(self):
    self.make_manager()
    v1, v2 = fake_loader.FakeLoader(), fake_loader.FakeLoader(block_load=True)
    self.aspire({1: v1})
    self.tick()
    self.assertEqual(self.serving_version(), 1)

    self.aspire({2: v2})
    ticking = threading.Thread(target=self.tick)  # Loads inline: blocks.
    ticking.start()
    self.assertTrue(v2.load_started.wait(5))
    self.assertEqual(self.serving_version(), 1)  # Old one still serves.
    v2.allow_load.set()
    ticking.join()
    self.assertEqual(self.serving_version(), 2)
    self.assertEqual(v1.unload_calls, 0)

    self.tick()  # Now that 2 is AVAILABLE, 1 goes.
    self.assertEqual(v1.unload_calls, 1)
    self.assertLess(
        self.event_index(sid(2), AVAILABLE),
        self.event_index(sid(1), servable_state.ManagerState.UNLOADING),
    )
    self.tick()  # And is forgotten.
    self.assertEqual(self.managed_versions(), {2: State.READY})
    self.assertEqual(self.monitor.get_state(sid(1)).manager_state, END)

  def test_failed_new_version_keeps_old_serving(self):
    self.make_manager()
    self.aspire({1: fake_loader.FakeLoader()})
    self.tick()
    error = status.data_loss("truncated variables")
    broken = fake_loader.FakeLoader(fail_times=float("inf"), error=error)
    self.aspire({2: broken})
    with self.assertLogs(CORE_LOG, "ERROR"):
      self.tick(3)
    self.assertEqual(self.serving_version(), 1)
    self.assertEqual(broken.load_calls, 1)  # Not retried by the manager.
    state = self.monitor.get_state(sid(2))
    self.assertEqual((state.manager_state, state.health), (END, error))
    self.assertEqual(self.managed_versions(), {1: State.READY, 2: State.ERROR})

  def test_removing_all_versions_unloads_lowest_first(self):
    self.make_manager()
    loaders = {1: fake_loader.FakeLoader(), 2: fake_loader.FakeLoader()}
    self.aspire(loaders)
    self.tick(2)  # One load per tick, highest first.
    self.assertEqual(
        self.manager.list_available_servable_ids(), [sid(1), sid(2)]
    )
    self.assertLess(
        self.event_index(sid(2), AVAILABLE), self.event_index(sid(1), AVAILABLE)
    )
    self.aspire({})
    self.tick()
    self.assertEqual(self.manager.list_available_servable_ids(), [sid(2)])
    self.tick(2)
    self.assertEqual(self.manager.list_available_servable_ids(), [])
    self.assertEqual(self.managed_versions(), {})
    for version, loader in loaders.items():
      self.assertEqual(loader.unload_calls, 1)
      self.assertEqual(self.monitor.get_state(sid(version)).manager_state, END)

  def test_errored_servable_data_is_visible_and_never_loaded(self):
    self.make_manager()
    error = status.invalid_argument("No platform found for model m")
    self.aspire({1: error})
    self.tick(2)
    state = self.monitor.get_state(sid(1))
    self.assertEqual((state.manager_state, state.health), (END, error))
    self.assertEqual(self.managed_versions(), {1: State.ERROR})

  def test_unaspired_new_version_is_dropped_without_loading(self):
    self.make_manager()
    v1, v2 = fake_loader.FakeLoader(), fake_loader.FakeLoader()
    self.aspire({1: v1, 2: v2})
    self.tick()  # Loads 2 only.
    self.aspire({2: v2})
    self.tick(2)
    self.assertEqual(v1.load_calls, 0)
    self.assertEqual(self.managed_versions(), {2: State.READY})
    self.assertEqual(
        self.recorder.states(sid(1)), [servable_state.ManagerState.START, END]
    )

  def test_reaspiring_ready_version_keeps_it_loaded(self):
    self.make_manager()
    v1 = fake_loader.FakeLoader()
    self.aspire({1: v1})
    self.tick()
    self.aspire({2: fake_loader.FakeLoader(fail_times=float("inf"))})
    with self.assertLogs(CORE_LOG, "ERROR"):
      self.tick()
    self.aspire(
        {1: fake_loader.FakeLoader()}
    )  # Back to 1; its old loader is kept.
    self.tick(2)
    self.assertEqual(self.serving_version(), 1)
    self.assertEqual((v1.load_calls, v1.unload_calls), (1, 0))
    self.assertEqual(self.managed_versions(), {1: State.READY})

  def test_failed_version_reloads_only_after_being_dropped(self):
    self.make_manager()
    flaky = fake_loader.FakeLoader(fail_times=1)
    self.aspire({1: flaky})
    with self.assertLogs(CORE_LOG, "ERROR"):
      self.tick(3)
    self.assertEqual(flaky.load_calls, 1)
    self.aspire({})
    self.tick(2)
    self.assertEqual(self.managed_versions(), {})
    fresh = fake_loader.FakeLoader()
    self.aspire({1: fresh})
    self.tick()
    self.assertEqual(self.serving_version(), 1)
    self.assertEqual(fresh.load_calls, 1)

  def test_reaspire_while_unloading_waits_for_unload(self):
    self.make_manager(num_unload_threads=1)
    old = fake_loader.FakeLoader()
    self.aspire({1: old})
    self.tick()
    handle = self.manager.get_servable_handle(LATEST)
    self.aspire({})
    self.tick()  # Unload starts, then waits for `handle`.
    fresh = fake_loader.FakeLoader()
    self.aspire({1: fresh})
    self.tick()  # Deferred: version 1 is still on its way out.
    self.assertEqual(fresh.load_calls, 0)
    handle.release()
    self.assertTrue(self.recorder.wait_for(sid(1), END))
    self.tick(2)  # Drop the old harness, then manage and load the new one.
    self.assertEqual(self.serving_version(), 1)
    self.assertEqual((old.unload_calls, fresh.load_calls), (1, 1))

  def test_unaspiring_cancels_pending_load_retries(self):
    self.make_manager(
        num_load_threads=1, max_num_load_retries=5, load_retry_interval_s=30
    )
    failing = fake_loader.FakeLoader(fail_times=float("inf"))
    self.aspire({1: failing})
    with self.assertLogs(CORE_LOG, "ERROR"):
      self.tick()
      self.assertTrue(failing.load_started.wait(5))
      self.aspire({})  # Cancels the 30 s back-off right away.
      self.assertTrue(self.recorder.wait_for(sid(1), END))
    self.assertEqual(failing.load_calls, 1)
    self.tick(2)
    self.assertEqual(self.managed_versions(), {})

  def test_unloads_run_before_loads_across_streams(self):
    tracker = resource_tracker.ResourceTracker(
        resources.ResourceAllocation(ram_bytes=10)
    )
    self.make_manager(resource_tracker=tracker)
    ten = resources.ResourceAllocation(ram_bytes=10)
    self.aspire({1: fake_loader.FakeLoader(estimate=ten)}, name="a")
    self.tick()
    self.aspire({}, name="a")
    self.aspire({1: fake_loader.FakeLoader(estimate=ten)}, name="b")
    self.tick()  # Unloads a:1 first, so b:1 fits.
    self.assertEqual(self.manager.list_available_servable_ids(), [sid(1, "b")])

  def test_invalid_requests_are_ignored(self):
    self.make_manager()
    with self.assertLogs("absl", "ERROR"):
      self.manager.get_aspired_versions_callback()(
          "m",
          [
              servable_data.ServableData.of(
                  sid(1, "other"), fake_loader.FakeLoader()
              )
          ],
      )
      self.manager.get_aspired_versions_callback()(
          "m",
          [
              servable_data.ServableData.of(sid(1), fake_loader.FakeLoader()),
              servable_data.ServableData.of(sid(1), fake_loader.FakeLoader()),
          ],
      )
    self.tick()
    self.assertEqual(
        self.manager.basic_manager.get_managed_servable_names(), []
    )


class ResourcePreservingTest(AspiredVersionsManagerTestBase):

  def test_never_two_versions_loaded(self):
    self.make_manager(resource_preserving_policy.ResourcePreservingPolicy())
    counter = fake_loader.LoadedCounter()
    self.aspire({1: fake_loader.FakeLoader(counter=counter)})
    self.tick()
    self.assertEqual(self.serving_version(), 1)
    self.aspire({2: fake_loader.FakeLoader(counter=counter)})
    self.tick()  # Unloads 1 first...
    self.assertIsNone(self.serving_version())  # ...leaving a gap.
    self.tick(3)
    self.assertEqual(self.serving_version(), 2)
    self.assertEqual(counter.max, 1)
    self.assertEqual(self.managed_versions(), {2: State.READY})


class BackgroundThreadTest(AspiredVersionsManagerTestBase):

  def test_converges_with_thread_and_pools(self):
    self.make_manager(
        manage_state_interval_s=0.01, num_load_threads=2, num_unload_threads=2
    )
    self.manager.start()
    self.aspire({1: fake_loader.FakeLoader()})
    reached, _ = self.monitor.wait_until_servables_reach_state(
        [LATEST], AVAILABLE, timeout_s=5
    )
    self.assertTrue(reached)
    v2 = fake_loader.FakeLoader()
    self.aspire({2: v2})
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.specific("m", 2)],
            AVAILABLE,
            timeout_s=5,
        ),
        (True, {sid(2): AVAILABLE}),
    )
    self.assertEqual(
        self.monitor.wait_until_servables_reach_state(
            [servable_request.ServableRequest.specific("m", 1)],
            END,
            timeout_s=5,
        ),
        (True, {sid(1): END}),
    )
    self.assertEqual(self.serving_version(), 2)
    self.manager.set_num_load_threads(4)
    self.assertEqual(self.manager.num_load_threads, 4)
    self.manager.stop()
    self.assertEqual(v2.unload_calls, 1)
    self.assertEqual(self.monitor.get_state(sid(2)).manager_state, END)
    self.assertEqual(self.manager.list_available_servable_ids(), [])


if __name__ == "__main__":
  unittest.main()
