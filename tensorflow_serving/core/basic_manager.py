"""Loads, serves and unloads servable versions on request, within a budget."""

from __future__ import annotations

import collections
from collections.abc import Callable
import concurrent.futures
import dataclasses
import threading
from typing import Any

from absl import logging

from tensorflow_serving.core import event_bus as event_bus_lib
from tensorflow_serving.core import loader
from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import serving_map
from tensorflow_serving.resources import (
    resource_tracker as resource_tracker_lib,
)
from tensorflow_serving.resources import resources
from tensorflow_serving.util import status

State = loader_harness.LoaderHarness.State

# Called once a load or unload request is finished: None on success.
DoneCallback = Callable[[status.ServingError | None], None]


class _InlineExecutor:
  """Runs work in the submitting thread: what 0 load/unload threads means."""

  def submit(self, fn: Callable[[], None]) -> None:
    fn()

  def shutdown(self, wait: bool = True) -> None:
    del wait


def _make_executor(num_threads: int, kind: str):
  if num_threads <= 0:
    return _InlineExecutor()
  return concurrent.futures.ThreadPoolExecutor(
      max_workers=num_threads, thread_name_prefix=f"BasicManager_{kind}"
  )


@dataclasses.dataclass(eq=False)
class _Managed:
  harness: loader_harness.LoaderHarness
  additional_state: Any = None


class BasicManager:
  """Owns the harnesses of every managed version and executes loads/unloads.

  It decides nothing by itself: callers (normally the AspiredVersionsManager)
  say which version to load or unload. It guarantees:
    * handles are served from an immutable map swapped on change, so
      `get_servable_handle` is a dict lookup plus a ref-count increment;
    * an unload first withdraws the version from that map, then waits for its
      outstanding handles, and only then calls `Loader.unload`;
    * a load is admitted only if its resource estimate fits the tracker's
      budget; when it does not but other loads/unloads are in flight it waits
      for them, since they may free resources, else it fails with
      RESOURCE_EXHAUSTED;
    * ServableState events go out in the order the states changed: START,
      LOADING, AVAILABLE (after the version is servable), UNLOADING (before it
      is withdrawn), END (health = the error, if it failed). Subscribers run
      in the thread that caused the change and may call the manager, but must
      not block waiting for other loads or unloads to progress.

  With 0 load (unload) threads a load (unload) runs inline in the caller of
  `load_servable` (`unload_servable`); otherwise in a thread pool.
  """

  def __init__(
      self,
      num_load_threads: int = 0,
      num_unload_threads: int = 0,
      max_num_load_retries: int = 5,
      load_retry_interval_s: float = 60.0,
      resource_tracker: resource_tracker_lib.ResourceTracker | None = None,
      event_bus: (
          event_bus_lib.EventBus[servable_state.ServableState] | None
      ) = None,
  ):
    self._max_num_load_retries = max_num_load_retries
    self._load_retry_interval_s = load_retry_interval_s
    self._resource_tracker = resource_tracker
    self._event_bus = event_bus

    # Guards the managed map, the serving map swaps, every harness's state
    # (harnesses share it) and the in-flight count. Reentrant because harness
    # transition hooks run while it is held.
    self._lock = threading.RLock()
    self._in_flight_changed = threading.Condition(self._lock)
    self._managed: dict[str, dict[int, _Managed]] = {}
    self._serving_map = serving_map.ServingMap()
    self._num_ongoing_executions = 0
    self._closed = False
    # One admission decision at a time, so a load waiting for resources is
    # not overtaken by later loads that would take what it waits for.
    self._decision_lock = threading.Lock()

    # Events are queued in state-change order under `_lock` and delivered
    # outside it (subscribers may call back into the manager), one thread at
    # a time, so every subscriber sees them in that order.
    self._events: collections.deque[servable_state.ServableState] = (
        collections.deque()
    )
    self._publish_lock = threading.Lock()
    self._publishing_thread: int | None = None

    self._executor_lock = threading.Lock()
    self._num_load_threads = num_load_threads
    self._load_executor = _make_executor(num_load_threads, "Load")
    self._unload_executor = _make_executor(num_unload_threads, "Unload")

  # --- Serving (hot path) -----------------------------------------------------

  def get_servable_handle(
      self, request: servable_request.ServableRequest
  ) -> servable_handle.ServableHandle:
    """A handle on the version `request` resolves to among AVAILABLE ones.

    Raises NOT_FOUND "Servable not found for request: Latest(m)" (upstream's
    exact text) when nothing matches.
    """
    while True:
      entry = self._serving_map.find(request)
      if entry is None:
        raise status.not_found(f"Servable not found for request: {request}")
      handle = entry.acquire()
      if handle is not None:
        return handle
      # Lost a race with an unload: the entry is already out of the current
      # map, so the next lookup makes progress.

  def get_available_servable_handles(
      self,
  ) -> dict[servable_id_lib.ServableId, servable_handle.ServableHandle]:
    """A handle on every AVAILABLE version; the caller releases them all."""
    handles = {}
    for entry in self._serving_map.entries():
      handle = entry.acquire()
      if handle is not None:
        handles[entry.id] = handle
    return handles

  def list_available_servable_ids(self) -> list[servable_id_lib.ServableId]:
    return [entry.id for entry in self._serving_map.entries()]

  # --- Management -------------------------------------------------------------

  def manage_servable(
      self,
      servable: servable_data.ServableData[loader.Loader],
      additional_state: Any = None,
  ) -> None:
    """Starts managing a version (state NEW, event START).

    A ServableData carrying an error is managed straight into ERROR, with an
    END event whose health is that error, so the failure is visible.
    Raises FAILED_PRECONDITION if the version is already managed.
    """
    sid = servable.id
    with self._lock:
      versions = self._managed.setdefault(sid.name, {})
      if sid.version in versions:
        raise status.failed_precondition(
            f"This servable is already being managed: {sid}"
        )
      harness = loader_harness.LoaderHarness(
          sid,
          servable.data if servable.ok else None,
          max_num_load_retries=self._max_num_load_retries,
          load_retry_interval_s=self._load_retry_interval_s,
          lock=self._lock,
          on_transition=self._on_transition,
          on_load_retry=self._on_load_retry,
      )
      versions[sid.version] = _Managed(harness, additional_state)
      if servable.ok:
        self._enqueue(sid, servable_state.ManagerState.START)
      else:
        harness.error(servable.error)
    self._publish_queued()

  def stop_managing_servable(
      self, servable_id: servable_id_lib.ServableId
  ) -> None:
    """Forgets a version that is NEW, DISABLED or ERROR.

    A NEW version gets an END event: it had a START, and the monitor would
    otherwise show it as starting forever.
    """
    with self._lock:
      managed = self._find(servable_id)
      if managed is None:
        raise status.failed_precondition(
            f"This servable is not being managed: {servable_id}"
        )
      state = managed.harness.state
      if state not in (State.NEW, State.ERROR, State.DISABLED):
        raise status.failed_precondition(
            "This servable is not in a new or end state and we cannot stop "
            f"managing it: {servable_id} {state.value}"
        )
      versions = self._managed[servable_id.name]
      del versions[servable_id.version]
      if not versions:
        del self._managed[servable_id.name]
      if state is State.NEW:
        self._enqueue(servable_id, servable_state.ManagerState.END)
    self._publish_queued()

  def get_managed_servable_names(self) -> list[str]:
    with self._lock:
      return sorted(self._managed)

  def get_managed_servable_state_snapshots(
      self, name: str
  ) -> list[loader_harness.ServableStateSnapshot]:
    """Every managed version of `name`, by ascending version."""
    with self._lock:
      versions = self._managed.get(name, {})
      return [self._snapshot(versions[v]) for v in sorted(versions)]

  def get_managed_servable_state_snapshot(
      self, servable_id: servable_id_lib.ServableId
  ) -> loader_harness.ServableStateSnapshot | None:
    with self._lock:
      managed = self._find(servable_id)
      return None if managed is None else self._snapshot(managed)

  def get_additional_servable_state(
      self, servable_id: servable_id_lib.ServableId
  ) -> Any:
    with self._lock:
      managed = self._find(servable_id)
      return None if managed is None else managed.additional_state

  # --- Load / unload ----------------------------------------------------------

  def load_servable(
      self,
      servable_id: servable_id_lib.ServableId,
      done_callback: DoneCallback | None = None,
  ) -> None:
    """Loads a NEW version; `done_callback(error_or_None)` when finished.

    The NEW -> LOAD_REQUESTED step happens synchronously, so a duplicate
    request fails at once (through the callback) instead of racing.
    """
    done = done_callback or _log_failure("load", servable_id)
    try:
      with self._lock:
        harness = self._healthy_harness(servable_id)
        harness.load_requested()
    except status.ServingError as e:
      done(e)
      return
    self._submit("load", lambda: self._execute_load(harness, done))

  def unload_servable(
      self,
      servable_id: servable_id_lib.ServableId,
      done_callback: DoneCallback | None = None,
  ) -> None:
    """Unloads a READY version; `done_callback(error_or_None)` when finished."""
    done = done_callback or _log_failure("unload", servable_id)
    try:
      with self._lock:
        harness = self._healthy_harness(servable_id)
        harness.unload_requested()
    except status.ServingError as e:
      done(e)
      return
    self._submit("unload", lambda: self._execute_unload(harness, done))

  def cancel_load_servable_retry(
      self, servable_id: servable_id_lib.ServableId
  ) -> None:
    """Stops retrying a failing load of `servable_id` (no-op if unknown)."""
    with self._lock:
      managed = self._find(servable_id)
    if managed is not None:
      managed.harness.cancel_load_retries()

  @property
  def num_load_threads(self) -> int:
    with self._executor_lock:
      return self._num_load_threads

  def set_num_load_threads(self, num_load_threads: int) -> None:
    """Resizes the load pool; returns once loads queued on the old pool ran.

    Used for the fast initial load at start-up. Do not call it from a load's
    done callback (it would wait for itself).
    """
    with self._executor_lock:
      old = self._load_executor
      self._load_executor = _make_executor(num_load_threads, "Load")
      self._num_load_threads = num_load_threads
    old.shutdown(wait=True)

  def close(self) -> None:
    """Finishes queued work, then unloads every loaded version.

    Pending load retries are cancelled first so shutdown does not sit out
    retry back-offs. Unloads still wait for outstanding handles.
    """
    with self._lock:
      if self._closed:
        return
      self._closed = True
      harnesses = [
          m.harness
          for versions in self._managed.values()
          for m in versions.values()
      ]
    for harness in harnesses:
      harness.cancel_load_retries()
    with self._executor_lock:
      pools = (self._load_executor, self._unload_executor)
      self._load_executor = self._unload_executor = _InlineExecutor()
    for pool in pools:
      pool.shutdown(wait=True)
    logging.info("Unloading all remaining servables in the manager")
    for harness in harnesses:
      try:
        with self._lock:
          harness.unload_requested()
      except status.ServingError:
        continue  # Not READY: nothing to unload.
      self._execute_unload(harness, _log_failure("unload", harness.id))

  def __enter__(self) -> BasicManager:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  # --- Execution --------------------------------------------------------------

  def _submit(self, kind: str, task: Callable[[], None]) -> None:
    """Queues `task` on the load or unload pool, or runs it right here.

    Inline work runs outside `_executor_lock`, so concurrent inline callers
    (and `set_num_load_threads`) do not wait on each other's loads.
    """
    with self._executor_lock:
      executor = (
          self._load_executor if kind == "load" else self._unload_executor
      )
      if not isinstance(executor, _InlineExecutor):
        executor.submit(_logged(task))
        return
    task()

  def _execute_load(
      self, harness: loader_harness.LoaderHarness, done: DoneCallback
  ) -> None:
    error = self._approve_load(harness)
    self._publish_queued()
    if error is not None:
      done(error)
      return
    try:
      harness.load()
    except status.ServingError as e:
      error = e
    self._execution_finished()
    done(error)

  def _approve_load(
      self, harness: loader_harness.LoaderHarness
  ) -> status.ServingError | None:
    """Reserves resources and moves the harness to LOAD_APPROVED (LOADING
    event), or records the failure (ERROR, END event) and returns it."""
    estimate = None
    error = None
    if self._resource_tracker is not None:
      # Outside the locks: estimating may read the file system.
      try:
        estimate = harness.loader.estimate_resources()
      except Exception as e:  # pylint: disable=broad-except
        error = status.internal(
            "Error while attempting to reserve resources to load servable "
            f"{harness.id}: {status.from_exception(e).message}"
        )
    with self._decision_lock, self._lock:
      if error is None and estimate is not None:
        error = self._reserve_resources(harness.id, estimate)
      if error is None:
        try:
          harness.load_approved()
          self._num_ongoing_executions += 1
        except (
            status.ServingError
        ) as e:  # Errored meanwhile (e.g. by the caller).
          return e
      if error is not None:
        logging.warning("%s", error)
        harness.error(error)
      return error

  def _reserve_resources(
      self,
      servable_id: servable_id_lib.ServableId,
      estimate: resources.ResourceAllocation,
  ) -> status.ServingError | None:
    """Called with both locks held; waits while executions may free room."""
    while not self._resource_tracker.reserve_if_possible(servable_id, estimate):
      if self._num_ongoing_executions == 0:
        return status.resource_exhausted(
            f"Insufficient resources to load servable {servable_id}"
        )
      logging.debug("Load of %s waits for an ongoing load/unload", servable_id)
      self._in_flight_changed.wait()
    return None

  def _execute_unload(
      self, harness: loader_harness.LoaderHarness, done: DoneCallback
  ) -> None:
    try:
      with self._decision_lock, self._lock:
        harness.start_quiescing()  # Queues UNLOADING.
        self._num_ongoing_executions += 1
    except status.ServingError as e:
      done(e)
      return
    # UNLOADING reaches subscribers before the version is withdrawn.
    self._publish_queued()
    with self._lock:
      entry = self._serving_map.get(harness.id)
      self._serving_map = self._serving_map.without(harness.id)
    if entry is not None:
      entry.close_and_wait()
    with self._lock:
      harness.done_quiescing()
    harness.unload()
    self._execution_finished()
    done(None)

  def _execution_finished(self) -> None:
    with self._lock:
      self._num_ongoing_executions -= 1
      self._in_flight_changed.notify_all()
    self._publish_queued()

  # --- State mirroring --------------------------------------------------------

  def _on_transition(
      self, harness: loader_harness.LoaderHarness, state: State
  ) -> None:
    """Harness hook, run under `_lock` at the moment the state changes."""
    sid = harness.id
    if state is State.LOAD_APPROVED:
      self._enqueue(sid, servable_state.ManagerState.LOADING)
    elif state is State.READY:
      entry = serving_map.ServingEntry(sid, harness.loader.servable())
      self._serving_map = self._serving_map.with_entry(entry)
      self._enqueue(sid, servable_state.ManagerState.AVAILABLE)
    elif state is State.QUIESCING:
      self._enqueue(sid, servable_state.ManagerState.UNLOADING)
    elif state is State.DISABLED:
      self._release_resources(sid)
      self._enqueue(sid, servable_state.ManagerState.END)
    elif state is State.ERROR:
      self._serving_map = self._serving_map.without(sid)
      self._release_resources(sid)
      self._enqueue(sid, servable_state.ManagerState.END, harness.status)

  def _on_load_retry(
      self,
      harness: loader_harness.LoaderHarness,
      error: status.ServingError,
      attempts: int,
  ) -> None:
    """A failed attempt that will be retried: LOADING again, with its error.

    Upstream reports such a version LOADING with no error through all its
    retries (minutes by default); the event's health carries the last error
    so GetModelStatus and the status page can say why it is not serving.
    """
    interval = max(0.0, harness.load_retry_interval_s)
    message = (
        f"Load attempt {attempts} of {harness.max_num_load_retries + 1} "
        f"failed, retrying in {interval:g} s: {error.code.name}: "
        f"{error.message}"
    )
    with self._lock:
      serial = self._num_load_threads == 0
    if serial:
      # One load at a time: every other version's load waits for this one.
      message += (
          " (loads run one at a time: other versions wait until this load "
          "ends; see --num_load_threads)"
      )
      logging.warning(
          "Load of %s is being retried while loads run one at a time: "
          "other versions' loads wait until it ends (--num_load_threads).",
          harness.id,
      )
    health = status.ServingError(error.code, message)
    with self._lock:
      self._enqueue(harness.id, servable_state.ManagerState.LOADING, health)
    self._publish_queued()

  def _release_resources(self, servable_id: servable_id_lib.ServableId) -> None:
    if self._resource_tracker is not None:
      self._resource_tracker.release(servable_id)

  def _enqueue(
      self,
      servable_id: servable_id_lib.ServableId,
      state: servable_state.ManagerState,
      health: status.ServingError | None = None,
  ) -> None:
    if self._event_bus is not None:
      self._events.append(
          servable_state.ServableState(servable_id, state, health)
      )

  def _publish_queued(self) -> None:
    """Delivers queued events in order; call without holding `_lock`.

    Returns once everything queued so far has been delivered, except when
    called from inside a subscriber callback: delivering there would put the
    new events ahead of the one still being delivered to later subscribers,
    so they are left for the enclosing delivery loop.
    """
    if self._event_bus is None:
      return
    me = threading.get_ident()
    if self._publishing_thread == me:
      return
    with self._publish_lock:
      self._publishing_thread = me
      try:
        while self._events:
          self._event_bus.publish(self._events.popleft())
      finally:
        self._publishing_thread = None

  # --- Lookup helpers (call with `_lock` held) --------------------------------

  def _find(self, servable_id: servable_id_lib.ServableId) -> _Managed | None:
    return self._managed.get(servable_id.name, {}).get(servable_id.version)

  def _healthy_harness(
      self, servable_id: servable_id_lib.ServableId
  ) -> loader_harness.LoaderHarness:
    if self._closed:
      raise status.failed_precondition("The manager is shutting down")
    managed = self._find(servable_id)
    if managed is None:
      raise status.not_found(
          f"This servable is not being managed by the manager: {servable_id}"
      )
    error = managed.harness.status
    if error is not None:
      # A fresh copy: re-raising one instance keeps growing its traceback.
      raise status.ServingError(error.code, error.message)
    return managed.harness

  @staticmethod
  def _snapshot(managed: _Managed) -> loader_harness.ServableStateSnapshot:
    return loader_harness.ServableStateSnapshot(
        managed.harness.id, managed.harness.state, managed.additional_state
    )


def _log_failure(
    action: str, servable_id: servable_id_lib.ServableId
) -> DoneCallback:
  def done(error: status.ServingError | None) -> None:
    if error is not None:
      logging.error(
          "Servable %s cannot be %sed: %s", servable_id, action, error
      )

  return done


def _logged(fn: Callable[[], None]) -> Callable[[], None]:
  """Pool threads swallow exceptions into futures nobody reads; log them."""

  def run() -> None:
    try:
      fn()
    except Exception:  # pylint: disable=broad-except
      logging.exception("Unexpected error in a load/unload execution")

  return run
