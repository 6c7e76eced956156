"""What a caller asks the manager for: a specific version or latest/earliest."""

from __future__ import annotations

import dataclasses
import enum

from tensorflow_serving.core import servable_id as servable_id_lib


class AutoVersionPolicy(enum.Enum):
  """Which available version an unversioned request resolves to."""

  LATEST = "latest"
  EARLIEST = "earliest"


@dataclasses.dataclass(frozen=True, slots=True)
class ServableRequest:
  """A servable name and either a version or an auto-version policy.

  `version` wins when set; `auto_version_policy` only matters without one.
  """

  name: str
  version: int | None = None
  auto_version_policy: AutoVersionPolicy = AutoVersionPolicy.LATEST

  @classmethod
  def latest(cls, name: str) -> ServableRequest:
    """The highest AVAILABLE version."""
    return cls(name)

  @classmethod
  def earliest(cls, name: str) -> ServableRequest:
    """The lowest AVAILABLE version."""
    return cls(name, None, AutoVersionPolicy.EARLIEST)

  @classmethod
  def specific(cls, name: str, version: int) -> ServableRequest:
    return cls(name, version)

  @classmethod
  def from_id(cls, servable_id: servable_id_lib.ServableId) -> ServableRequest:
    return cls(servable_id.name, servable_id.version)

  def __str__(self) -> str:
    # Upstream's ServableRequest::DebugString, part of the NOT_FOUND message
    # "Servable not found for request: Latest(m)" that clients match on.
    if self.version is not None:
      return f"Specific({self.name}, {self.version})"
    if self.auto_version_policy is AutoVersionPolicy.EARLIEST:
      return f"Earliest({self.name})"
    return f"Latest({self.name})"
