"""What the server serves: the configured models and their versions' states.

Every read of model state that a client sees (GetModelStatus over gRPC and
REST, the REST listing, readiness, the status page) goes through one
ModelView, so they cannot disagree. In one process that is this process's
ServableStateMonitor; under --num_workers the worker's view asks every
worker through its supervisor and merges the answers
(workers/model_status.py), so the answer does not depend on which worker
took the connection.
"""

from __future__ import annotations

from typing import Any

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers import control_plane
from tensorflow_serving.model_servers import get_model_status_impl
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import status

GetModelStatusResponse = get_model_status_pb2.GetModelStatusResponse


class ModelView:
  """Model names and version states, this process's or every worker's."""

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      management: control_plane.ModelManagement | None = None,
  ):
    self._core = core
    # Set under --num_workers: the supervisor's merged answer.
    self._management = management

  def names(self) -> list[str]:
    """The configured models' names, in config order.

    Every worker applies each config before a reload returns, so the
    worker's own config is the one every worker serves.
    """
    config: Any = self._core.config  # A proto; mypy sees no stub for it.
    return [m.name for m in config.model_config_list.config]

  async def get_model_status(
      self, request: get_model_status_pb2.GetModelStatusRequest
  ) -> GetModelStatusResponse:
    """GetModelStatus: the monitor read, or the workers' merged answer.

    Awaited on the event loop; neither holds a request thread.
    """
    if self._management is not None:
      return await self._management.get_model_status(request)
    return get_model_status_impl.get_model_status(self._core.monitor, request)

  async def statuses(self) -> list[tuple[str, GetModelStatusResponse]]:
    """Each configured model's versions (none yet: an empty response)."""
    answers = []
    for name in self.names():
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = name
      try:
        response = await self.get_model_status(request)
      except status.ServingError:
        response = GetModelStatusResponse()
      answers.append((name, response))
    return answers
