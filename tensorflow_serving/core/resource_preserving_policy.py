"""A policy that never holds two versions of a stream in memory at once."""

from __future__ import annotations

from collections.abc import Sequence

from tensorflow_serving.core.aspired_version_policy import Action
from tensorflow_serving.core.aspired_version_policy import (
    AspiredServableStateSnapshot,
)
from tensorflow_serving.core.aspired_version_policy import AspiredVersionPolicy
from tensorflow_serving.core.aspired_version_policy import ServableAction
from tensorflow_serving.core.aspired_version_policy import (
    get_highest_aspired_new_servable_id,
)
from tensorflow_serving.core.loader_harness import LoaderHarness

State = LoaderHarness.State


class ResourcePreservingPolicy(AspiredVersionPolicy):
  """Unloads old versions completely before loading a new one.

  Saves memory at the cost of a gap in availability during a version swap.
  """

  def get_next_action(
      self, all_versions: Sequence[AspiredServableStateSnapshot]
  ) -> ServableAction | None:
    # 1. Unload the first READY version that is no longer aspired.
    for version in all_versions:
      if not version.is_aspired and version.state is State.READY:
        return ServableAction(Action.UNLOAD, version.id)
    # 2. Wait while any un-aspired version has not finished (still loading,
    #    quiescing or unloading): it may still hold resources.
    for version in all_versions:
      if not version.is_aspired and version.state not in (
          State.DISABLED,
          State.ERROR,
      ):
        return None
    # 3. Only then load the newest aspired version.
    to_load = get_highest_aspired_new_servable_id(all_versions)
    if to_load is not None:
      return ServableAction(Action.LOAD, to_load)
    return None
