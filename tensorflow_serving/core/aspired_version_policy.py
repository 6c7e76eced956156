"""The interface deciding, per servable stream, what to load or unload next."""

from __future__ import annotations

import abc
from collections.abc import Sequence
import dataclasses
import enum

from tensorflow_serving.core import loader_harness
from tensorflow_serving.core import servable_id


@dataclasses.dataclass(frozen=True, slots=True)
class AspiredServableStateSnapshot:
  """One managed version as a policy sees it."""

  id: servable_id.ServableId
  state: loader_harness.LoaderHarness.State
  is_aspired: bool


class Action(enum.Enum):
  LOAD = "load"
  UNLOAD = "unload"


@dataclasses.dataclass(frozen=True, slots=True)
class ServableAction:
  action: Action
  id: servable_id.ServableId

  def __str__(self) -> str:
    return f"{{action: {self.action.value} id: {self.id}}}"


class AspiredVersionPolicy(abc.ABC):
  """Chooses at most one action for one stream from its versions' states.

  Called by the AspiredVersionsManager on every tick with all managed
  versions of a single servable name; returning one action per tick keeps
  transitions gradual, so policies can reason about "what is serving now".
  """

  @abc.abstractmethod
  def get_next_action(
      self, all_versions: Sequence[AspiredServableStateSnapshot]
  ) -> ServableAction | None:
    """The next load or unload for this stream, or None to wait."""


def get_highest_aspired_new_servable_id(
    all_versions: Sequence[AspiredServableStateSnapshot],
) -> servable_id.ServableId | None:
  """The highest-numbered version that is aspired and still NEW, if any."""
  candidates = [
      v.id
      for v in all_versions
      if v.is_aspired and v.state is loader_harness.LoaderHarness.State.NEW
  ]
  return max(candidates, key=lambda i: i.version, default=None)
