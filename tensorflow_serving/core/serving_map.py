"""The manager's index of AVAILABLE servables, built for the request hot path.

Every inference request resolves a ServableRequest here, so lookups take no
manager lock: the map is immutable and the manager swaps in a new one when a
version becomes available or starts unloading (read-copy-update). Each entry
counts its handles so an unload can wait for in-flight requests.
"""

from __future__ import annotations

from collections.abc import Iterator
import threading
from typing import Any

from absl import logging

from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import servable_request

# How often a blocked unload reminds the log which handles it waits for.
_QUIESCE_LOG_INTERVAL_S = 30.0


class ServingEntry:
  """One available version and the number of handles currently out on it."""

  __slots__ = ("id", "servable", "_mutex", "_unreferenced", "_refs", "_closed")

  def __init__(self, servable_id: servable_id_lib.ServableId, servable: Any):
    self.id = servable_id
    self.servable = servable
    # Reentrant: a handle garbage collected while this thread holds the lock
    # releases itself (ServableHandle.__del__) through the same lock. The hot
    # path takes the mutex directly; only unloading waits on the condition.
    self._mutex = threading.RLock()
    self._unreferenced = threading.Condition(self._mutex)
    self._refs = 0
    self._closed = False

  @property
  def ref_count(self) -> int:
    with self._mutex:
      return self._refs

  @property
  def closed(self) -> bool:
    with self._mutex:
      return self._closed

  def acquire(self) -> servable_handle.ServableHandle | None:
    """A new handle, or None once the entry is closed for unloading."""
    with self._mutex:
      if self._closed:
        return None
      self._refs += 1
    return servable_handle.ServableHandle(self.id, self.servable, self)

  def release_handle(self, handle: servable_handle.ServableHandle) -> None:
    with self._mutex:
      if handle.released:
        return
      handle.released = True
      self._refs -= 1
      if self._refs == 0 and self._closed:
        self._unreferenced.notify_all()

  def close_and_wait(self) -> None:
    """Refuses new handles, then blocks until every handle is released.

    Call only after the entry left the current map, so a lookup that loses the
    race against closing finds the newer map without it.
    """
    with self._unreferenced:
      self._closed = True
      while self._refs:
        if not self._unreferenced.wait(_QUIESCE_LOG_INTERVAL_S):
          logging.warning(
              "Unload of servable %s waits for %d outstanding " "handle(s)",
              self.id,
              self._refs,
          )


class _Stream:
  """The available versions of one servable name, with both ends precomputed."""

  __slots__ = ("versions", "latest", "earliest")

  def __init__(self, versions: dict[int, ServingEntry]):
    self.versions = versions
    self.latest = versions[max(versions)]
    self.earliest = versions[min(versions)]


class ServingMap:
  """Immutable name -> versions index; `with_entry`/`without` return copies."""

  __slots__ = ("_streams",)

  def __init__(self, streams: dict[str, _Stream] | None = None):
    self._streams = streams or {}

  def find(
      self, request: servable_request.ServableRequest
  ) -> ServingEntry | None:
    """The entry `request` resolves to; O(1), no locks."""
    stream = self._streams.get(request.name)
    if stream is None:
      return None
    if request.version is not None:
      return stream.versions.get(request.version)
    if (
        request.auto_version_policy
        is servable_request.AutoVersionPolicy.EARLIEST
    ):
      return stream.earliest
    return stream.latest

  def get(self, servable_id: servable_id_lib.ServableId) -> ServingEntry | None:
    stream = self._streams.get(servable_id.name)
    return None if stream is None else stream.versions.get(servable_id.version)

  def entries(self) -> Iterator[ServingEntry]:
    """Every entry, ordered by (name, version)."""
    for name in sorted(self._streams):
      versions = self._streams[name].versions
      for version in sorted(versions):
        yield versions[version]

  def with_entry(self, entry: ServingEntry) -> ServingMap:
    stream = self._streams.get(entry.id.name)
    versions = dict(stream.versions) if stream else {}
    versions[entry.id.version] = entry
    return self._replace(entry.id.name, versions)

  def without(self, servable_id: servable_id_lib.ServableId) -> ServingMap:
    stream = self._streams.get(servable_id.name)
    if stream is None or servable_id.version not in stream.versions:
      return self
    versions = dict(stream.versions)
    del versions[servable_id.version]
    return self._replace(servable_id.name, versions)

  def _replace(
      self, name: str, versions: dict[int, ServingEntry]
  ) -> ServingMap:
    streams = dict(self._streams)
    if versions:
      streams[name] = _Stream(versions)
    else:
      streams.pop(name, None)
    return ServingMap(streams)
