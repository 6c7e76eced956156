"""The model repository extension as a per-model control API over ServerCore.

`load` adds a model (or replaces its config) and `unload` removes one, on
the same ServerCore the config file feeds, so the model shows in
GetModelStatus, /v1/models, the status page and metrics like any other.
A load's `config` parameter is upstream's ModelConfig in its JSON form.
How it meets config-file polling: the API wins for the names it touched
until a HandleReloadConfigRequest replaces the whole config (upstream's
semantics), which forgets them. Upstream exposes no unauthenticated state
change, so loads and unloads are refused unless the server was started with
--enable_model_control_api; the index is read-only and always answers.

Loads and unloads go through the control plane (control_plane.py), as
reloads do: applied one at a time on its thread, awaited holding none,
bounded by the caller's deadline and --model_config_reload_timeout_seconds,
and under --num_workers applied by every worker before they return.
"""

from __future__ import annotations

import dataclasses
import os

from google.protobuf import json_format

from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.core import servable_state
from tensorflow_serving.model_servers import control_plane as control_plane_lib
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import status

ManagerState = servable_state.ManagerState
DISABLED_MESSAGE = (
    "The model control API is off: start the server with "
    "--enable_model_control_api to load and unload models"
)
# Triton's words for a version's state in the index.
_STATES = {
    ManagerState.START: "LOADING",
    ManagerState.LOADING: "LOADING",
    ManagerState.AVAILABLE: "READY",
    ManagerState.UNLOADING: "UNLOADING",
    ManagerState.END: "UNAVAILABLE",
}


@dataclasses.dataclass(frozen=True)
class IndexEntry:
  name: str
  version: str
  state: str
  reason: str = ""


class ModelRepository:
  """Index, load and unload over one ServerCore."""

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      enabled: bool,
      control: control_plane_lib.ControlPlane | None = None,
  ):
    if enabled and control is None:
      raise ValueError("An enabled model repository needs the control plane")
    self._core = core
    self.enabled = enabled
    self._control = control

  def index(self, ready_only: bool = False) -> list[IndexEntry]:
    """Every version the server knows of, configured models first."""
    entries = []
    states = self._core.monitor.get_all_servable_states()
    for name in sorted(states):
      for version, entry in sorted(states[name].items()):
        state = entry.state
        word = _STATES[state.manager_state]
        if ready_only and word != "READY":
          continue
        reason = ""
        if state.health is not None and state.manager_state == ManagerState.END:
          reason = state.health.message
        elif state.manager_state == ManagerState.END:
          reason = "unloaded"
        entries.append(IndexEntry(name, str(version), word, reason))
    return entries

  async def load(
      self,
      name: str,
      config_json: str | dict | None,
      timeout_s: float | None = None,
  ) -> None:
    """Serves `name` with `config_json` (a ModelConfig), or its known config.

    Returns once it is available (in every worker); `timeout_s` is the
    caller's deadline, if any.
    """
    self._check_enabled()
    assert self._control is not None
    await self._control.load_model(
        lambda: self._resolve(name, config_json), timeout_s
    )

  def _resolve(
      self, name: str, config_json: str | dict | None
  ) -> model_server_config_pb2.ModelConfig:
    """The ModelConfig a load serves (on the control thread: it reads disk)."""
    if config_json is None:
      known = self._core.known_model_config(name)
      if known is None:
        raise status.invalid_argument(
            f"No config is known for model {name}: give its ModelConfig as "
            "the 'config' parameter"
        )
      model = known
    else:
      model = parse_model_config(config_json)
      if model.name and model.name != name:
        raise status.invalid_argument(
            f"The config names model {model.name}, the request {name}"
        )
      model.name = name
    # A local base path that is not there would only be polled for ever.
    if model.base_path.startswith("/") and not os.path.isdir(model.base_path):
      raise status.invalid_argument(
          f"The base_path {model.base_path} of model {name} is not a "
          "directory"
      )
    return model

  async def unload(self, name: str, timeout_s: float | None = None) -> None:
    """Stops serving `name`; returns once unloaded (in every worker)."""
    self._check_enabled()
    assert self._control is not None
    await self._control.unload_model(name, timeout_s)

  def _check_enabled(self) -> None:
    if not self.enabled:
      raise status.unimplemented(DISABLED_MESSAGE)


def parse_model_config(
    config: str | dict,
) -> model_server_config_pb2.ModelConfig:
  """Upstream's ModelConfig from its JSON form (text or a parsed object)."""
  model = model_server_config_pb2.ModelConfig()
  try:
    if isinstance(config, str):
      json_format.Parse(config, model)
    elif isinstance(config, dict):
      json_format.ParseDict(config, model)
    else:
      raise status.invalid_argument(
          "The 'config' parameter must be a ModelConfig in JSON form"
      )
  except json_format.ParseError as exc:
    raise status.invalid_argument(
        f"The 'config' parameter is not a ModelConfig: {exc}"
    ) from exc
  if not model.base_path:
    raise status.invalid_argument("The ModelConfig must give a base_path")
  if not model.model_platform and not model.model_type:
    # As --model_name/--model_base_path: a TensorFlow SavedModel.
    model.model_platform = server_core_lib.TENSORFLOW_PLATFORM
  return model
