"""A minimal synchronous publish/subscribe channel."""

from __future__ import annotations

from collections.abc import Callable
import threading
from typing import Generic, TypeVar

from absl import logging

T = TypeVar("T")


class Subscription:
  """Returned by `EventBus.subscribe`; `cancel()` stops further deliveries.

  A publish already in progress in another thread may still deliver one event
  after `cancel()` returns, since delivery runs outside the bus lock.
  """

  __slots__ = ("_bus", "_callback")

  def __init__(self, bus: EventBus, callback: Callable):
    self._bus: EventBus | None = bus
    self._callback = callback

  def cancel(self) -> None:
    """Idempotent."""
    bus, self._bus = self._bus, None
    if bus is not None:
      bus._unsubscribe(self)  # pylint: disable=protected-access

  def __enter__(self) -> Subscription:
    return self

  def __exit__(self, *exc_info) -> None:
    self.cancel()


class EventBus(Generic[T]):
  """Delivers each published event to every subscriber, in the caller's thread.

  Synchronous delivery means that once `publish` returns every subscriber has
  seen the event (the manager relies on this to announce UNLOADING before it
  withdraws a servable). Subscribers are kept in an immutable tuple replaced on
  change, so publishing takes no lock and a callback may subscribe, cancel or
  publish without deadlocking. Callbacks should be quick; an exception in one
  is logged and does not stop delivery to the others.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._subscriptions: tuple[Subscription, ...] = ()

  def subscribe(self, callback: Callable[[T], None]) -> Subscription:
    subscription = Subscription(self, callback)
    with self._lock:
      self._subscriptions += (subscription,)
    return subscription

  def publish(self, event: T) -> None:
    for subscription in self._subscriptions:
      if subscription._bus is None:  # pylint: disable=protected-access
        continue  # Cancelled after we took the snapshot.
      try:
        subscription._callback(event)  # pylint: disable=protected-access
      except Exception:  # pylint: disable=broad-except
        logging.exception("EventBus subscriber failed on event %s", event)

  def _unsubscribe(self, subscription: Subscription) -> None:
    with self._lock:
      self._subscriptions = tuple(
          s for s in self._subscriptions if s is not subscription
      )
