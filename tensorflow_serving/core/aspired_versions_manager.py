"""The manager the model server uses: sources say what, a policy says when."""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import logging
import threading

from tensorflow_serving.core.aspired_version_policy import Action
from tensorflow_serving.core.aspired_version_policy import (
    AspiredServableStateSnapshot,
)
from tensorflow_serving.core.aspired_version_policy import AspiredVersionPolicy
from tensorflow_serving.core.aspired_version_policy import ServableAction
from tensorflow_serving.core.basic_manager import BasicManager
from tensorflow_serving.core.event_bus import EventBus
from tensorflow_serving.core.loader import Loader
from tensorflow_serving.core.loader_harness import LoaderHarness
from tensorflow_serving.core.servable_data import ServableData
from tensorflow_serving.core.servable_handle import ServableHandle
from tensorflow_serving.core.servable_id import ServableId
from tensorflow_serving.core.servable_request import ServableRequest
from tensorflow_serving.core.servable_state import ServableState
from tensorflow_serving.core.source import AspiredVersionsCallback
from tensorflow_serving.core.target import Target
from tensorflow_serving.resources.resource_tracker import ResourceTracker
from tensorflow_serving.util.status import ServingError

_log = logging.getLogger(__name__)

State = LoaderHarness.State

# Un-aspired versions in these states are dropped from management.
_FINISHED = (State.NEW, State.DISABLED, State.ERROR)
# An un-aspired version in these states can simply be aspired again.
_REASPIRABLE = (State.NEW, State.READY)


@dataclasses.dataclass(eq=False)
class _Aspired:
  """Stored as the BasicManager's additional state of each managed version."""

  is_aspired: bool = True


class AspiredVersionsManager(Target[Loader]):
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
      policy: AspiredVersionPolicy,
      manage_state_interval_s: float = 0.1,
      num_load_threads: int = 0,
      num_unload_threads: int = 0,
      max_num_load_retries: int = 5,
      load_retry_interval_s: float = 60.0,
      resource_tracker: ResourceTracker | None = None,
      event_bus: EventBus[ServableState] | None = None,
  ):
    self._policy = policy
    self._interval_s = manage_state_interval_s
    self._basic = BasicManager(
        num_load_threads=num_load_threads,
        num_unload_threads=num_unload_threads,
        max_num_load_retries=max_num_load_retries,
        load_retry_interval_s=load_retry_interval_s,
        resource_tracker=resource_tracker,
        event_bus=event_bus,
    )
    self._pending_lock = threading.Lock()
    self._pending: dict[str, list[ServableData[Loader]]] = {}
    # One tick at a time; also guards every _Aspired flag.
    self._tick_lock = threading.Lock()
    self._wake = threading.Event()
    self._stopping = threading.Event()
    self._thread: threading.Thread | None = None

  @property
  def basic_manager(self) -> BasicManager:
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

  def get_aspired_versions_callback(self) -> AspiredVersionsCallback[Loader]:
    return self._set_aspired_versions

  def _set_aspired_versions(
      self, name: str, versions: Sequence[ServableData[Loader]]
  ) -> None:
    versions = list(versions)
    wanted = set()
    for version in versions:
      if version.id.name != name:
        _log.error(
            "Servable name: %s doesn't match name in servable "
            "version: %s; ignoring the request",
            name,
            version.id.name,
        )
        return
      if version.id.version in wanted:
        _log.error(
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

  def get_servable_handle(self, request: ServableRequest) -> ServableHandle:
    return self._basic.get_servable_handle(request)

  def get_available_servable_handles(self) -> dict[ServableId, ServableHandle]:
    return self._basic.get_available_servable_handles()

  def list_available_servable_ids(self) -> list[ServableId]:
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
        _log.exception("AspiredVersionsManager tick failed")
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
          except ServingError as e:
            _log.error("Cannot stop managing %s: %s", snapshot.id, e)

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
      self, name: str, versions: list[ServableData[Loader]]
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
    actions: list[ServableAction] = []
    for name in self._basic.get_managed_servable_names():
      snapshots = [
          AspiredServableStateSnapshot(
              s.id, s.state, s.additional_state.is_aspired
          )
          for s in self._basic.get_managed_servable_state_snapshots(name)
      ]
      action = self._policy.get_next_action(snapshots)
      if action is not None:
        actions.append(action)
    # Unloads first (stable sort keeps stream order otherwise).
    actions.sort(key=lambda a: a.action is Action.LOAD)
    for action in actions:
      if self._stopping.is_set():
        return  # stop() unloads everything; no point starting more work.
      self._perform(action)

  def _perform(self, action: ServableAction) -> None:
    verb = "loaded" if action.action is Action.LOAD else "unloaded"

    def done(error: ServingError | None) -> None:
      if error is not None:
        _log.error("Servable %s cannot be %s: %s", action.id, verb, error)
      else:
        self._wake.set()  # The policy may have a follow-up action.

    if action.action is Action.LOAD:
      self._basic.load_servable(action.id, done)
    else:
      self._basic.unload_servable(action.id, done)
