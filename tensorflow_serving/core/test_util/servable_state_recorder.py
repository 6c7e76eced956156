"""Records ServableState events from a bus so tests can assert their order."""

from __future__ import annotations

import threading

from tensorflow_serving.core import event_bus
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_state


class ServableStateRecorder:
  """Every event published on a bus, in delivery order."""

  def __init__(self, bus: event_bus.EventBus[servable_state.ServableState]):
    self._cond = threading.Condition()
    self._events: list[servable_state.ServableState] = []
    self._subscription = bus.subscribe(self._record)

  def _record(self, event: servable_state.ServableState) -> None:
    with self._cond:
      self._events.append(event)
      self._cond.notify_all()

  @property
  def events(self) -> list[servable_state.ServableState]:
    with self._cond:
      return list(self._events)

  def states(
      self, servable_id: servable_id_lib.ServableId
  ) -> list[servable_state.ManagerState]:
    return [e.manager_state for e in self.events if e.id == servable_id]

  def last(
      self, servable_id: servable_id_lib.ServableId
  ) -> servable_state.ServableState | None:
    matching = [e for e in self.events if e.id == servable_id]
    return matching[-1] if matching else None

  def wait_for(
      self,
      servable_id: servable_id_lib.ServableId,
      state: servable_state.ManagerState,
      timeout_s: float = 10.0,
  ) -> bool:
    """Whether `servable_id` reached `state` within the timeout."""
    with self._cond:
      return self._cond.wait_for(
          lambda: any(
              e.id == servable_id and e.manager_state is state
              for e in self._events
          ),
          timeout_s,
      )
