"""GetModelStatus over protos, from the ServableStateMonitor."""

from __future__ import annotations

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.core import servable_state
from tensorflow_serving.core import servable_state_monitor
from tensorflow_serving.util import status

_State = get_model_status_pb2.ModelVersionStatus.State
_STATE_ENUM = {
    servable_state.ManagerState.START: _State.START,
    servable_state.ManagerState.LOADING: _State.LOADING,
    servable_state.ManagerState.AVAILABLE: _State.AVAILABLE,
    servable_state.ManagerState.UNLOADING: _State.UNLOADING,
    servable_state.ManagerState.END: _State.END,
}


def get_model_status(
    monitor: servable_state_monitor.ServableStateMonitor,
    request: get_model_status_pb2.GetModelStatusRequest,
) -> get_model_status_pb2.GetModelStatusResponse:
  """Every version the monitor has seen (END included), or just one."""
  if not request.HasField("model_spec"):
    raise status.invalid_argument("Missing ModelSpec")
  spec = request.model_spec
  name = spec.name
  if not name:
    raise status.invalid_argument("ModelSpec has no name specified.")
  states = monitor.get_version_states(name)
  response = get_model_status_pb2.GetModelStatusResponse()
  if spec.WhichOneof("version_choice") == "version":
    version = spec.version.value
    if version not in states:
      raise status.not_found(
          f"Could not find version {version} of model {name}"
      )
    _add(response, states[version].state)
    return response
  if not states:
    raise status.not_found(f"Could not find any versions of model {name}")
  for _, state_and_time in sorted(states.items(), reverse=True):
    _add(response, state_and_time.state)
  return response


def _add(response, state: servable_state.ServableState) -> None:
  entry = response.model_version_status.add(
      version=state.id.version, state=_STATE_ENUM[state.manager_state]
  )
  # Always present, so REST prints {"error_code": "OK", ...} as upstream does.
  entry.status.SetInParent()
  if state.health is None:
    return
  if state.manager_state is servable_state.ManagerState.LOADING:
    # A load that failed and will be retried: upstream's state and code
    # (LOADING, OK), with the last attempt's error in the message.
    entry.status.error_message = state.health.message
    return
  entry.status.error_code = int(state.health.code)
  entry.status.error_message = state.health.message
