"""Admission control: a budget of resources and who has reserved what."""

from __future__ import annotations

from collections.abc import Hashable
import threading

from tensorflow_serving.resources import resources


class ResourceTracker:
  """Reserves resources per servable against an optional total budget.

  Only the kinds listed in `total` are limited; other kinds are tracked but
  unmetered, so a RAM budget does not reject a loader that also reports, say,
  GPU memory. `total=None` means no limit at all (upstream's default when
  `total_model_memory_limit_bytes` is unset). Thread-safe: the manager reserves
  from load threads and releases from unload threads.
  """

  def __init__(self, total: resources.ResourceAllocation | None = None):
    self._total = total
    self._lock = threading.Lock()
    self._reservations: dict[Hashable, resources.ResourceAllocation] = {}
    self._used = resources.ResourceAllocation()

  @property
  def total(self) -> resources.ResourceAllocation | None:
    return self._total

  @property
  def used(self) -> resources.ResourceAllocation:
    """Sum of every current reservation."""
    with self._lock:
      return self._used

  def reservation(
      self, servable_id: Hashable
  ) -> resources.ResourceAllocation | None:
    with self._lock:
      return self._reservations.get(servable_id)

  def reserve_if_possible(
      self, servable_id: Hashable, allocation: resources.ResourceAllocation
  ) -> bool:
    """Reserves `allocation` for `servable_id` if it fits in what is left.

    A second reservation for the same id replaces the first (the check counts
    the old one as freed), so a re-estimate never double-books.
    """
    with self._lock:
      previous = self._reservations.get(
          servable_id, resources.ResourceAllocation()
      )
      candidate = self._used.subtract(previous).add(allocation)
      if self._total is not None:
        for kind, limit in self._total.items():
          if candidate.quantity(kind) > limit:
            return False
      self._reservations[servable_id] = allocation
      self._used = candidate
      return True

  def release(self, servable_id: Hashable) -> None:
    """Frees what `servable_id` reserved; a no-op if it holds nothing."""
    with self._lock:
      allocation = self._reservations.pop(servable_id, None)
      if allocation is not None:
        self._used = self._used.subtract(allocation)
