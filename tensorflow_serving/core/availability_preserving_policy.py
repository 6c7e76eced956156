"""The policy the model server uses: never drop to zero serving versions."""

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

_READY = LoaderHarness.State.READY


class AvailabilityPreservingPolicy(AspiredVersionPolicy):
  """Loads the new version before unloading the old one.

  An un-aspired READY version is unloaded only when that cannot leave the
  stream without a serving version: when nothing is aspired any more, when an
  aspired version is already READY, or when more than one un-aspired version
  is READY (one of them can go). Otherwise it loads the highest aspired NEW
  version. Consequences: a failed new version leaves the old one serving
  indefinitely, and a removed model unloads one version per tick, lowest
  first. This briefly needs memory for two versions.
  """

  def get_next_action(
      self, all_versions: Sequence[AspiredServableStateSnapshot]
  ) -> ServableAction | None:
    has_aspired = False
    has_aspired_serving = False
    unaspired_serving = []
    for version in all_versions:
      if version.is_aspired:
        has_aspired = True
        if version.state is _READY:
          has_aspired_serving = True
      elif version.state is _READY:
        unaspired_serving.append(version.id)

    if unaspired_serving and (
        not has_aspired or has_aspired_serving or len(unaspired_serving) > 1
    ):
      lowest = min(unaspired_serving, key=lambda i: i.version)
      return ServableAction(Action.UNLOAD, lowest)

    to_load = get_highest_aspired_new_servable_id(all_versions)
    if to_load is not None:
      return ServableAction(Action.LOAD, to_load)
    return None
