"""Targets: consumers of aspired versions, e.g. adapters and managers."""

from __future__ import annotations

import abc
from typing import Generic, TypeVar

from tensorflow_serving.core import source as source_lib

T = TypeVar("T")


class Target(abc.ABC, Generic[T]):
  """Receives aspired versions through the callback it hands out."""

  @abc.abstractmethod
  def get_aspired_versions_callback(
      self,
  ) -> source_lib.AspiredVersionsCallback[T]:
    """The callback a source should call; safe to call from any thread."""


def connect_source_to_target(
    source: source_lib.Source[T], target: Target[T]
) -> None:
  """Wires `source` so that its emissions reach `target`."""
  source.set_aspired_versions_callback(target.get_aspired_versions_callback())
