"""Sources that transform another source's data, e.g. path -> Loader."""

from __future__ import annotations

import abc
import threading
from typing import Generic, TypeVar

from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import source
from tensorflow_serving.core import target
from tensorflow_serving.util import status

In = TypeVar("In")
Out = TypeVar("Out")


class SourceAdapter(source.Source[Out], target.Target[In], Generic[In, Out]):
  """A Target of `In` that re-emits each version converted to `Out`.

  Subclasses implement `convert`. An exception from `convert` fails only that
  version (it travels on as ServableData.failed, as upstream's adapters do),
  and incoming errors pass through unchanged. Emissions that arrive before a
  downstream callback is set are not lost: the latest per stream is kept and
  delivered when the callback is set, since later emissions replace earlier
  ones anyway.
  """

  def __init__(self):
    # Serializes delivery so the buffered flush cannot overtake (and then be
    # overwritten by) a newer emission for the same stream.
    self._lock = threading.RLock()
    self._callback: source.AspiredVersionsCallback[Out] | None = None
    self._pending: dict[str, list[servable_data.ServableData[Out]]] = {}

  @abc.abstractmethod
  def convert(self, servable_id: servable_id_lib.ServableId, data: In) -> Out:
    """Converts one version's data; raise to fail just that version."""

  def set_aspired_versions_callback(
      self, callback: source.AspiredVersionsCallback[Out]
  ) -> None:
    with self._lock:
      self._callback = callback
      pending, self._pending = self._pending, {}
      for name, versions in pending.items():
        callback(name, versions)

  def get_aspired_versions_callback(self) -> source.AspiredVersionsCallback[In]:
    return self._set_aspired_versions

  def _set_aspired_versions(
      self, name: str, versions: list[servable_data.ServableData[In]]
  ) -> None:
    converted = [self._adapt(version) for version in versions]
    with self._lock:
      if self._callback is None:
        self._pending[name] = converted
        return
      self._callback(name, converted)

  def _adapt(
      self, version: servable_data.ServableData[In]
  ) -> servable_data.ServableData[Out]:
    if not version.ok:
      return servable_data.ServableData.failed(version.id, version.error)
    try:
      return servable_data.ServableData.of(
          version.id, self.convert(version.id, version.data)
      )
    except Exception as e:  # pylint: disable=broad-except
      return servable_data.ServableData.failed(
          version.id, status.from_exception(e)
      )


class ErrorInjectingSourceAdapter(SourceAdapter[In, Out]):
  """Turns every version into the same error.

  Upstream routes models of an unknown platform here so that they show up in
  the state monitor as failed instead of silently never loading.
  """

  def __init__(self, error: status.ServingError):
    super().__init__()
    self._error = error

  def convert(self, servable_id: servable_id_lib.ServableId, data: In) -> Out:
    raise self._error
