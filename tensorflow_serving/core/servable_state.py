"""The lifecycle state the manager publishes for each servable version."""

from __future__ import annotations

import dataclasses
import enum

from tensorflow_serving.core import servable_id
from tensorflow_serving.util import status


class ManagerState(enum.Enum):
  """Coarse, externally visible lifecycle of a servable version.

  Values equal ModelVersionStatus.State in get_model_status.proto so the
  status RPC can map them one to one.
  """

  START = 10  # Managed; not loading yet.
  LOADING = 20  # Load approved and under way.
  AVAILABLE = 30  # Serving; handles can be obtained.
  UNLOADING = 40  # No new handles; waiting for old ones, then unloading.
  END = 50  # Unloaded, or failed (then `health` holds the error).


@dataclasses.dataclass(frozen=True, slots=True)
class ServableState:
  """One lifecycle event: which version, its state and its health.

  `health` None means OK; an END with an error is how a failed load surfaces,
  and a LOADING with one is a failed attempt that will be retried.
  """

  id: servable_id.ServableId
  manager_state: ManagerState
  health: status.ServingError | None = None

  def __str__(self) -> str:
    health = "OK" if self.health is None else repr(self.health)
    return (
        f"id: {self.id} manager_state: {self.manager_state.name} "
        f"health: {health}"
    )
