"""MultiInference for the servers.

As upstream, the FIRST task's ModelSpec picks the servable (so only its
version or label counts); the other tasks must name the same model, which
`run_multi_inference` checks.
"""

from __future__ import annotations

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import (
    multi_inference as multi_inference_lib,
)
from tensorflow_serving.util import status


def multi_inference(
    core: server_core_lib.ServerCore,
    request: inference_pb2.MultiInferenceRequest,
) -> inference_pb2.MultiInferenceResponse:
  # Checked before resolving, or an empty request would only report the
  # (default) first ModelSpec's missing name.
  if not request.tasks:
    raise status.invalid_argument(multi_inference_lib.NO_TASKS_MESSAGE)
  response = inference_pb2.MultiInferenceResponse()
  with core.get_servable_handle(request.tasks[0].model_spec) as handle:
    multi_inference_lib.run_multi_inference(
        handle.servable, request, response, version=handle.id.version
    )
  return response
