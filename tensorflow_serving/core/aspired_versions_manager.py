"""The manager the model server uses: sources say what, a policy says when."""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import threading

from absl import logging

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import basic_manager as basic_manager_lib
from tensorflow_serving.core import event_bus as event_bus_lib
from tensorflow_serving.core import loader
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import source
from tensorflow_serving.core import target
from tensorflow_serving.resources import (
    resource_tracker as resource_tracker_lib,
)
from tensorflow_serving.util import status

State = loader_harness.LoaderHarness.State

# Un-aspired versions in these states are dropped from management.
_FINISHED = (State.NEW, State.DISABLED, State.ERROR)
# An un-aspired version in these states can simply be aspired again.
_REASPIRABLE = (State.NEW, State.READY)


@dataclasses.dataclass(eq=False)
class _Aspired:
  """Stored as the BasicManager's additional state of each managed version."""

  is_aspired: bool = True


class AspiredVersionsManager(target.Target[loader.Loader]):
  """Converges the loaded versions to what sources currently aspire.

  Sources call the aspired-versions callback with the full set of versions
  they want per servable name. The callback only records the request (and
  stops load retries of versions left out), so a source is never blocked by
  a slow load. A background thread then, every `manage_state_interval_s`:
    1. stops managing un-aspired versions that are NEW, DISABLED or ERROR;
    2. applies the recorded requests: new versions become managed (a version
       carrying an error goes straight to ERROR, visible in the monitor),
       omitted ones are marked un-aspired;
    3. asks the policy for one action per stream and runs them, unloads
       before loads so that freed resources can serve the loads.
  Loads and unloads run in the BasicManager's pools, or inline in that thread
  with 0 threads. A version that failed stays in ERROR while aspired; it is
  retried only if it is un-aspired (and dropped) and then aspired again.
  """

  def __init__(
      self,
      policy: aspired_version_policy.AspiredVersionPolicy,
      manage_state_interval_s: float = 0.1,
      num_load_threads: int = 0,
      num_unload_threads: int = 0,
      max_num_load_retries: int = 5,
      load_retry_interval_s: float = 60.0,
      resource_tracker: resource_tracker_lib.ResourceTracker | None = None,
      event_bus: (
          event_bus_lib.EventBus[servable_state.ServableState] | None
      ) = None,
  ):
    self._policy = policy
    self._interval_s = manage_state_interval_s
    self._basic = basic_manager_lib.BasicManager(
        num_load_threads=num_load_threads,
        num_unload_threads=num_unload_threads,
        max_num_load_retries=max_num_load_retries,
        load_retry_interval_s=load_retry_interval_s,
        resource_tracker=resource_tracker,
        event_bus=event_bus,
    )
    self._pending_lock = threading.Lock()
    self._pending: dict[
        str, list[servable_data.ServableData[loader.Loader]]
    ] = {}
    # One tick at a time; also guards every _Aspired flag.
    self._tick_lock = threading.Lock()
    self._wake = threading.Event()
    self._stopping = threading.Event()
    self._thread: threading.Thread | None = None

  @property
  def basic_manager(self) -> basic_manager_lib.BasicManager:
    return self._basic

  # --- Lifecycle --------------------------------------------------------------

  def start(self) -> None:
    """Starts the manage-state thread (none if the interval is <= 0)."""
    if self._thread is not None or self._interval_s <= 0:
      return
    self._thread = threading.Thread(
        target=self._run, name="AspiredVersionsManager_ManageState", daemon=True
    )
    self._thread.start()

  def stop(self) -> None:
    """Stops the thread, then unloads every version. Idempotent."""
    self._stopping.set()
    self._wake.set()
    # A tick may be sitting in an inline load's retry back-off.
    for name in self._basic.get_managed_servable_names():
      for snapshot in self._basic.get_managed_servable_state_snapshots(name):
        self._basic.cancel_load_servable_retry(snapshot.id)
    if self._thread is not None:
      self._thread.join()
    with self._tick_lock:
      self._basic.close()

  def __enter__(self) -> AspiredVersionsManager:
    self.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self.stop()

  # --- Target -----------------------------------------------------------------

  def get_aspired_versions_callback(
      self,
  ) -> source.AspiredVersionsCallback[loader.Loader]:
    return self._set_aspired_versions

  def _set_aspired_versions(
      self,
      name: str,
      versions: Sequence[servable_data.ServableData[loader.Loader]],
  ) -> None:
    versions = list(versions)
    wanted = set()
    for version in versions:
      if version.id.name != name:
        logging.error(
            "Servable name: %s doesn't match name in servable "
            "version: %s; ignoring the request",
            name,
            version.id.name,
        )
        return
      if version.id.version in wanted:
        logging.error(
            "Duplicate aspired version %s; ignoring the request", version.id
        )
        return
      wanted.add(version.id.version)
    with self._pending_lock:
      self._pending[name] = versions
    # Interrupt retry back-offs now rather than at the next tick: with inline
    # loads, that tick may be the very thread stuck retrying.
    for snapshot in self._basic.get_managed_servable_state_snapshots(name):
      if snapshot.id.version not in wanted:
        self._basic.cancel_load_servable_retry(snapshot.id)
    self._wake.set()

  # --- Manager ----------------------------------------------------------------

  def get_servable_handle(
      self, request: servable_request.ServableRequest
  ) -> servable_handle.ServableHandle:
    return self._basic.get_servable_handle(request)

  def get_available_servable_handles(
      self,
  ) -> dict[servable_id.ServableId, servable_handle.ServableHandle]:
    return self._basic.get_available_servable_handles()

  def list_available_servable_ids(self) -> list[servable_id.ServableId]:
    return self._basic.list_available_servable_ids()

  @property
  def num_load_threads(self) -> int:
    return self._basic.num_load_threads

  def set_num_load_threads(self, num_load_threads: int) -> None:
    """See BasicManager.set_num_load_threads (fast initial load)."""
    self._basic.set_num_load_threads(num_load_threads)

  # --- Manage-state tick ------------------------------------------------------

  def _run(self) -> None:
    while not self._stopping.is_set():
      try:
        self._manage_state()
      except Exception:  # pylint: disable=broad-except
        logging.exception("AspiredVersionsManager tick failed")
      self._wake.wait(self._interval_s)
      self._wake.clear()

  def _manage_state(self) -> None:
    """One tick; tests call it directly instead of starting the thread."""
    with self._tick_lock:
      if self._stopping.is_set():
        return
      self._flush_servables()
      self._handle_pending_aspired_versions_requests()
      self._invoke_policy_and_execute_actions()

  def _flush_servables(self) -> None:
    for name in self._basic.get_managed_servable_names():
      for snapshot in self._basic.get_managed_servable_state_snapshots(name):
        if (
            not snapshot.additional_state.is_aspired
            and snapshot.state in _FINISHED
        ):
          try:
            self._basic.stop_managing_servable(snapshot.id)
          except status.ServingError as e:
            logging.error("Cannot stop managing %s: %s", snapshot.id, e)

  def _handle_pending_aspired_versions_requests(self) -> None:
    with self._pending_lock:
      pending, self._pending = self._pending, {}
    deferred = {
        name: versions
        for name, versions in pending.items()
        if not self._apply_aspired_versions(name, versions)
    }
    if deferred:
      with self._pending_lock:
        for name, versions in deferred.items():
          self._pending.setdefault(name, versions)  # A newer request wins.

  def _apply_aspired_versions(
      self, name: str, versions: list[servable_data.ServableData[loader.Loader]]
  ) -> bool:
    """Applies one stream's request; False to retry it on a later tick.

    A request re-aspiring a version that is on its way out (unloading,
    finished, or mid-load after its retries were cancelled) waits until that
    version is dropped, so it is then managed afresh with the new loader.
    """
    snapshots = {
        s.id.version: s
        for s in self._basic.get_managed_servable_state_snapshots(name)
    }
    wanted = {v.id.version for v in versions}
    for version in wanted:
      snapshot = snapshots.get(version)
      if (
          snapshot is not None
          and not snapshot.additional_state.is_aspired
          and snapshot.state not in _REASPIRABLE
      ):
        return False
    for version, snapshot in snapshots.items():
      aspired = snapshot.additional_state
      if version in wanted:
        aspired.is_aspired = True
      elif aspired.is_aspired:
        aspired.is_aspired = False
        self._basic.cancel_load_servable_retry(snapshot.id)
    for data in versions:
      if data.id.version not in snapshots:
        self._basic.manage_servable(data, _Aspired())
    return True

  def _invoke_policy_and_execute_actions(self) -> None:
    actions: list[aspired_version_policy.ServableAction] = []
    for name in self._basic.get_managed_servable_names():
      snapshots = [
          aspired_version_policy.AspiredServableStateSnapshot(
              s.id, s.state, s.additional_state.is_aspired
          )
          for s in self._basic.get_managed_servable_state_snapshots(name)
      ]
      action = self._policy.get_next_action(snapshots)
      if action is not None:
        actions.append(action)
    # Unloads first (stable sort keeps stream order otherwise).
    actions.sort(key=lambda a: a.action is aspired_version_policy.Action.LOAD)
    for action in actions:
      if self._stopping.is_set():
        return  # stop() unloads everything; no point starting more work.
      self._perform(action)

  def _perform(self, action: aspired_version_policy.ServableAction) -> None:
    verb = (
        "loaded"
        if action.action is aspired_version_policy.Action.LOAD
        else "unloaded"
    )

    def done(error: status.ServingError | None) -> None:
      if error is not None:
        logging.error("Servable %s cannot be %s: %s", action.id, verb, error)
      else:
        self._wake.set()  # The policy may have a follow-up action.

    if action.action is aspired_version_policy.Action.LOAD:
      self._basic.load_servable(action.id, done)
    else:
      self._basic.unload_servable(action.id, done)
