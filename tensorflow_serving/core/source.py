"""Sources: emitters of the set of versions that should be loaded."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Generic, TypeVar

from tensorflow_serving.core import servable_data

T = TypeVar("T")

# Called as callback(servable_name, versions). Each call REPLACES the aspired
# set of that servable stream: a version left out is no longer aspired, and
# an empty list un-aspires them all. This lets sources stay stateless: they
# report what exists now, never what changed.
AspiredVersionsCallback = Callable[
    [str, list[servable_data.ServableData[T]]], None
]


class Source(abc.ABC, Generic[T]):
  """Something that reports aspired versions, e.g. a file-system poller."""

  @abc.abstractmethod
  def set_aspired_versions_callback(
      self, callback: AspiredVersionsCallback[T]
  ) -> None:
    """Sets where aspired versions go; called once, before any emission.

    A source may call `callback` from any thread, any time after this.
    """
