"""A policy that never holds two versions of a stream in memory at once."""

from __future__ import annotations

from collections.abc import Sequence

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import loader_harness

State = loader_harness.LoaderHarness.State


class ResourcePreservingPolicy(aspired_version_policy.AspiredVersionPolicy):
  """Unloads old versions completely before loading a new one.

  Saves memory at the cost of a gap in availability during a version swap.
  """

  def get_next_action(
      self,
      all_versions: Sequence[
          aspired_version_policy.AspiredServableStateSnapshot
      ],
  ) -> aspired_version_policy.ServableAction | None:
    # 1. Unload the first READY version that is no longer aspired.
    for version in all_versions:
      if not version.is_aspired and version.state is State.READY:
        return aspired_version_policy.ServableAction(
            aspired_version_policy.Action.UNLOAD, version.id
        )
    # 2. Wait while any un-aspired version has not finished (still loading,
    #    quiescing or unloading): it may still hold resources.
    for version in all_versions:
      if not version.is_aspired and version.state not in (
          State.DISABLED,
          State.ERROR,
      ):
        return None
    # 3. Only then load the newest aspired version.
    to_load = aspired_version_policy.get_highest_aspired_new_servable_id(
        all_versions
    )
    if to_load is not None:
      return aspired_version_policy.ServableAction(
          aspired_version_policy.Action.LOAD, to_load
      )
    return None
