"""The interface the manager uses to load, serve and unload one version."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from tensorflow_serving.resources import resources


class Loader(abc.ABC):
  """Knows how to bring one servable version into memory and back out.

  The manager calls `estimate_resources` before `load` (to admit the load
  against the budget), `load` at most once per attempt (again on retry after a
  failure), `servable` once loaded, and `unload` once no handle is left.
  `load` may block for a long time; it runs outside every manager lock.
  """

  def estimate_resources(self) -> resources.ResourceAllocation:
    """Upper bound of what `load` will use; empty means free.

    Must not change between calls until `load` runs, and must be cheap enough
    to call from the manager's load thread.
    """
    return resources.ResourceAllocation()

  @abc.abstractmethod
  def load(self) -> None:
    """Loads the servable; raise (ServingError or any exception) on failure.

    A failed `load` must leave nothing behind: the manager may call it again
    (retry) but will not call `unload` for a load that failed.
    """

  @abc.abstractmethod
  def unload(self) -> None:
    """Frees what `load` acquired. Only called after a successful `load`."""

  @abc.abstractmethod
  def servable(self) -> Any:
    """The loaded object handed out through ServableHandle.servable."""


class SimpleLoader(Loader):
  """A Loader built from functions, for tests and servables without setup.

  `creator()` builds the servable on load; `unloader(servable)`, if given,
  tears it down on unload.
  """

  def __init__(
      self,
      creator: Callable[[], Any],
      estimate: resources.ResourceAllocation | None = None,
      unloader: Callable[[Any], None] | None = None,
  ):
    self._creator = creator
    self._estimate = (
        estimate if estimate is not None else resources.ResourceAllocation()
    )
    self._unloader = unloader
    self._servable: Any = None

  def estimate_resources(self) -> resources.ResourceAllocation:
    return self._estimate

  def load(self) -> None:
    self._servable = self._creator()

  def unload(self) -> None:
    servable, self._servable = self._servable, None
    if self._unloader is not None:
      self._unloader(servable)

  def servable(self) -> Any:
    return self._servable
