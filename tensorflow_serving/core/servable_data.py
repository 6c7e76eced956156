"""A servable id paired with either its payload or the error producing it."""

from __future__ import annotations

from typing import Generic, TypeVar

from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.util import status

T = TypeVar("T")


class ServableData(Generic[T]):
  """What a source emits for one version: data (e.g. a path or a Loader).

  Errors travel in-band instead of being raised so that one bad version does
  not stop a source from reporting the others; the manager records the error
  against that version, where the state monitor can show it.
  """

  __slots__ = ("id", "data", "error")

  def __init__(
      self,
      servable_id: servable_id_lib.ServableId,
      data: T | None = None,
      error: status.ServingError | None = None,
  ):
    if data is not None and error is not None:
      raise ValueError("ServableData holds data or an error, not both")
    self.id = servable_id
    self.data = data
    self.error = error

  @classmethod
  def of(
      cls, servable_id: servable_id_lib.ServableId, data: T
  ) -> ServableData[T]:
    return cls(servable_id, data=data)

  @classmethod
  def failed(
      cls, servable_id: servable_id_lib.ServableId, error: status.ServingError
  ) -> ServableData[T]:
    if error is None:
      raise ValueError("ServableData.failed needs an error")
    return cls(servable_id, error=error)

  @property
  def ok(self) -> bool:
    return self.error is None

  def __eq__(self, other: object) -> bool:
    return (
        isinstance(other, ServableData)
        and other.id == self.id
        and other.data == self.data
        and other.error == self.error
    )

  __hash__ = None  # Mutable payloads; compare by value only.

  def __repr__(self) -> str:
    if self.error is not None:
      return f"ServableData({self.id}, error={self.error!r})"
    return f"ServableData({self.id}, {self.data!r})"
