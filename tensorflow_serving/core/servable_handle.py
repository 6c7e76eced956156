"""A counted reference to a loaded servable, held for one request."""

from __future__ import annotations

from typing import Any, Protocol

from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.util import status


class HandleOwner(Protocol):
  """Whoever counts the handle's reference (the manager's serving entry)."""

  def release_handle(self, handle: ServableHandle) -> None:
    """Drops `handle`'s reference; must ignore a handle already released."""


class ServableHandle:
  """Keeps a servable version loaded while a request uses it.

  The manager does not unload a version while any handle to it is held, so a
  request never sees its model torn down mid-flight. Use it as a context
  manager (or call `release()`) and do not keep it beyond the request: a held
  handle stalls that version's unload. Releasing twice is harmless, and a
  handle that is garbage collected unreleased releases itself.
  """

  __slots__ = ("_id", "_servable", "_owner", "released")

  def __init__(
      self,
      servable_id: servable_id_lib.ServableId,
      servable: Any,
      owner: HandleOwner | None = None,
  ):
    self._id = servable_id
    self._servable = servable
    self._owner = owner
    # Written by the owner under its own lock; that lock, not this flag,
    # makes a racing double release count once.
    self.released = False

  @property
  def id(self) -> servable_id_lib.ServableId:
    return self._id

  @property
  def servable(self) -> Any:
    if self.released:
      raise status.failed_precondition(
          f"ServableHandle for {self._id} used after release"
      )
    return self._servable

  def release(self) -> None:
    if self.released:
      return
    if self._owner is None:
      self.released = True
    else:
      self._owner.release_handle(self)

  def __del__(self) -> None:
    # Safety net for a handle dropped without release (CPython frees it as
    # soon as the last reference goes): a leaked count would stall the
    # version's unload forever.
    if not self.released and self._owner is not None:
      try:
        self._owner.release_handle(self)
      except Exception:  # pylint: disable=broad-except
        pass  # Interpreter shutdown; nothing left to unload.

  def __enter__(self) -> ServableHandle:
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()

  def __repr__(self) -> str:
    state = "released" if self.released else "held"
    return f"ServableHandle({self._id}, {state})"
