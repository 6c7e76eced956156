"""Remembers every servable state published on the bus; lets callers wait."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
import dataclasses
import functools
import threading
import time

from tensorflow_serving.core import event_bus as event_bus_lib
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request
from tensorflow_serving.core import servable_state


@dataclasses.dataclass(frozen=True, slots=True)
class ServableStateAndTime:
  state: servable_state.ServableState
  event_time_micros: int  # Wall clock when the monitor received the event.


VersionMap = dict[int, ServableStateAndTime]
ServableMap = dict[str, VersionMap]
StatesReached = dict[servable_id_lib.ServableId, servable_state.ManagerState]
# notifier(all_reached_goal, states_reached)
NotifierFn = Callable[[bool, StatesReached], None]


@dataclasses.dataclass(eq=False)
class _Notification:
  requests: tuple[servable_request.ServableRequest, ...]
  goal_state: servable_state.ManagerState
  notifier: NotifierFn


def _descending(versions: VersionMap) -> VersionMap:
  return dict(sorted(versions.items(), reverse=True))


class ServableStateMonitor:
  """Subscribes to the manager's event bus and keeps what it has seen.

  Every version ever seen stays, END included: upstream's GetModelStatus
  reports the whole history (issue #1488), and the start-up/reload waits need
  to see that a version ended. `live` states drop versions once they END.
  Waiting uses a condition variable signalled per event, never polling.
  """

  def __init__(
      self,
      event_bus: event_bus_lib.EventBus[servable_state.ServableState],
      max_count_log_events: int = 0,
  ):
    self._lock = threading.Lock()
    self._changed = threading.Condition(self._lock)
    self._states: ServableMap = {}
    self._live_states: ServableMap = {}
    self._log: collections.deque[ServableStateAndTime] | None = (
        collections.deque(maxlen=max_count_log_events)
        if max_count_log_events > 0
        else None
    )
    self._notifications: list[_Notification] = []
    # Last, so an event arriving during construction finds the state ready.
    self._subscription = event_bus.subscribe(self._handle_event)

  def close(self) -> None:
    """Stops listening; what was recorded stays readable."""
    self._subscription.cancel()

  # --- Queries ----------------------------------------------------------------

  def get_state_and_time(
      self, servable_id: servable_id_lib.ServableId
  ) -> ServableStateAndTime | None:
    with self._lock:
      return self._states.get(servable_id.name, {}).get(servable_id.version)

  def get_state(
      self, servable_id: servable_id_lib.ServableId
  ) -> servable_state.ServableState | None:
    state_and_time = self.get_state_and_time(servable_id)
    return None if state_and_time is None else state_and_time.state

  def get_version_states(self, servable_name: str) -> VersionMap:
    """Version -> latest state of every version seen, highest version first."""
    with self._lock:
      return _descending(self._states.get(servable_name, {}))

  def get_all_servable_states(self) -> ServableMap:
    with self._lock:
      return {name: _descending(v) for name, v in self._states.items()}

  def get_live_servable_states(self) -> ServableMap:
    """Like get_all_servable_states, without versions that reached END."""
    with self._lock:
      return {name: _descending(v) for name, v in self._live_states.items()}

  def get_available_servable_names(self) -> set[str]:
    """Names with at least one AVAILABLE version."""
    with self._lock:
      return {
          name
          for name, versions in self._live_states.items()
          if any(
              s.state.manager_state is servable_state.ManagerState.AVAILABLE
              for s in versions.values()
          )
      }

  def forget_unloaded_servable_states(self, only: str | None = None) -> None:
    """Drops END versions (of the model `only`, if given).

    For callers that want bounded memory, and for one that loads a model
    again and must not take its last unload for the new load's outcome.
    """
    with self._lock:
      for name in [only] if only is not None else list(self._states):
        if name not in self._states:
          continue
        versions = {
            v: s
            for v, s in self._states[name].items()
            if s.state.manager_state is not servable_state.ManagerState.END
        }
        if versions:
          self._states[name] = versions
        else:
          del self._states[name]

  def get_bounded_log(self) -> list[ServableStateAndTime]:
    """The last `max_count_log_events` events, oldest first."""
    with self._lock:
      return list(self._log) if self._log is not None else []

  # --- Waiting ----------------------------------------------------------------

  def notify_when_servables_reach_state(
      self,
      requests: Iterable[servable_request.ServableRequest],
      goal_state: servable_state.ManagerState,
      notifier: NotifierFn,
  ) -> Callable[[], None]:
    """Calls `notifier(all_reached_goal, states)` once every request is done.

    A request is done when its version reached `goal_state` or END (END is
    terminal, so waiting longer cannot help). A Latest/Earliest request is done
    by any version of that name: the highest one in `goal_state`, else the
    highest one in END. `notifier` may run in this thread (if already done) or
    in the thread publishing the deciding event.

    Returns a function that forgets the notification (a no-op once it ran),
    so that a caller who stops waiting leaves nothing behind.
    """
    notification = _Notification(tuple(requests), goal_state, notifier)
    with self._lock:
      result = self._check(notification.requests, goal_state)
      if result is None:
        self._notifications.append(notification)
        return functools.partial(self._forget, notification)
    notifier(*result)
    return lambda: None

  def _forget(self, notification: _Notification) -> None:
    with self._lock:
      self._notifications = [
          n for n in self._notifications if n is not notification
      ]

  def wait_until_servables_reach_state(
      self,
      requests: Sequence[servable_request.ServableRequest],
      goal_state: servable_state.ManagerState,
      timeout_s: float | None = None,
  ) -> tuple[bool, StatesReached]:
    """Blocks until every request is done (see notify_when...) or timeout.

    Returns (whether all reached `goal_state`, the state reached per version).
    On timeout returns False with the current state of the versions known so
    far (for Latest/Earliest requests, of the highest version seen).
    """
    requests = tuple(requests)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with self._changed:
      while True:
        result = self._check(requests, goal_state)
        if result is not None:
          return result
        remaining = None
        if deadline is not None:
          remaining = deadline - time.monotonic()
          if remaining <= 0:
            return False, self._current_states(requests)
        self._changed.wait(remaining)

  # --- Internals --------------------------------------------------------------

  def _handle_event(self, state: servable_state.ServableState) -> None:
    state_and_time = ServableStateAndTime(state, time.time_ns() // 1000)
    name, version = state.id.name, state.id.version
    with self._lock:
      self._states.setdefault(name, {})[version] = state_and_time
      if state.manager_state is servable_state.ManagerState.END:
        live = self._live_states.get(name)
        if live is not None:
          live.pop(version, None)
          if not live:
            del self._live_states[name]
      else:
        self._live_states.setdefault(name, {})[version] = state_and_time
      if self._log is not None:
        self._log.append(state_and_time)
      due = []
      for notification in self._notifications:
        result = self._check(notification.requests, notification.goal_state)
        if result is not None:
          due.append((notification, result))
      if due:
        done = {id(n) for n, _ in due}
        self._notifications = [
            n for n in self._notifications if id(n) not in done
        ]
      self._changed.notify_all()
    # Outside the lock: a notifier may query the monitor or block briefly.
    for notification, result in due:
      notification.notifier(*result)

  def _check(
      self,
      requests: Sequence[servable_request.ServableRequest],
      goal_state: servable_state.ManagerState,
  ) -> tuple[bool, StatesReached] | None:
    """(all reached goal, states) once every request is done, else None."""
    all_reached_goal = True
    reached: StatesReached = {}
    for request in requests:
      versions = self._states.get(request.name, {})
      if request.version is not None:
        found = versions.get(request.version)
        if found is None or found.state.manager_state not in (
            goal_state,
            servable_state.ManagerState.END,
        ):
          return None
      else:
        found = self._highest_in(versions, goal_state) or self._highest_in(
            versions, servable_state.ManagerState.END
        )
        if found is None:
          return None
      state = found.state.manager_state
      reached[found.state.id] = state
      all_reached_goal = all_reached_goal and state is goal_state
    return all_reached_goal, reached

  @staticmethod
  def _highest_in(
      versions: VersionMap, manager_state: servable_state.ManagerState
  ) -> ServableStateAndTime | None:
    matching = [
        v for v, s in versions.items() if s.state.manager_state is manager_state
    ]
    return versions[max(matching)] if matching else None

  def _current_states(
      self, requests: Sequence[servable_request.ServableRequest]
  ) -> StatesReached:
    current: StatesReached = {}
    for request in requests:
      versions = self._states.get(request.name, {})
      if request.version is not None:
        found = versions.get(request.version)
      else:
        found = versions[max(versions)] if versions else None
      if found is not None:
        current[found.state.id] = found.state.manager_state
    return current
