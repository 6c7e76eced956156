"""The policy the model server uses: never drop to zero serving versions."""

from __future__ import annotations

from collections.abc import Sequence

from tensorflow_serving.core import aspired_version_policy
from tensorflow_serving.core import loader_harness

_READY = loader_harness.LoaderHarness.State.READY


class AvailabilityPreservingPolicy(aspired_version_policy.AspiredVersionPolicy):
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
      self,
      all_versions: Sequence[
          aspired_version_policy.AspiredServableStateSnapshot
      ],
  ) -> aspired_version_policy.ServableAction | None:
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
      return aspired_version_policy.ServableAction(
          aspired_version_policy.Action.UNLOAD, lowest
      )

    to_load = aspired_version_policy.get_highest_aspired_new_servable_id(
        all_versions
    )
    if to_load is not None:
      return aspired_version_policy.ServableAction(
          aspired_version_policy.Action.LOAD, to_load
      )
    return None
