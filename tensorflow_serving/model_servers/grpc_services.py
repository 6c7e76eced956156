"""gRPC adapters: PredictionService and ModelService over one ServerCore.

The servicers are coroutines (grpc.aio style) run on the server's event loop
by util/grpc_h2. Predict decodes on the loop and awaits only the model run,
so batches form from as many requests as are in flight; the other methods
call their transport-free *_impl on a worker thread. A ServingError becomes
the gRPC status with the same code and message.
"""

from __future__ import annotations

from collections.abc import Awaitable
import time
from typing import Any

from absl import logging
import grpc

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers import classification_service_impl
from tensorflow_serving.model_servers import get_model_metadata_impl
from tensorflow_serving.model_servers import get_model_status_impl
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import multi_inference_impl
from tensorflow_serving.model_servers import predict_impl
from tensorflow_serving.model_servers import regression_service_impl
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status


async def _run(
    context: Any, api: str, model_name: str, work: Awaitable[Any]
) -> Any:
  """Awaits one RPC's work, counting it under upstream's metric names."""
  start = time.perf_counter()
  try:
    result = await work
  except status.ServingError as exc:
    metrics.record_request(model_name, api, "GRPC", exc.code.name, start)
    await context.abort(grpc.StatusCode[exc.code.name], exc.message)
  except Exception as exc:  # pylint: disable=broad-except
    logging.exception("Unexpected error in %s", api)
    metrics.record_request(model_name, api, "GRPC", "INTERNAL", start)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"
    )
  metrics.record_request(model_name, api, "GRPC", "OK", start)
  return result


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService."""

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      runner: model_runner.ModelRunner,
      use_tensor_content: bool = False,
  ):
    self._core = core
    self._runner = runner
    self._use_tensor_content = use_tensor_content

  async def Predict(self, request, context):
    return await _run(
        context,
        "predict",
        request.model_spec.name,
        predict_impl.predict(
            self._core, request, self._runner, self._use_tensor_content
        ),
    )

  async def Classify(self, request, context):
    return await _run(
        context,
        "classify",
        request.model_spec.name,
        self._runner.call(
            classification_service_impl.classify, self._core, request
        ),
    )

  async def Regress(self, request, context):
    return await _run(
        context,
        "regress",
        request.model_spec.name,
        self._runner.call(regression_service_impl.regress, self._core, request),
    )

  async def MultiInference(self, request, context):
    model = request.tasks[0].model_spec.name if request.tasks else ""
    return await _run(
        context,
        "multi_inference",
        model,
        self._runner.call(
            multi_inference_impl.multi_inference, self._core, request
        ),
    )

  async def GetModelMetadata(self, request, context):
    return await _run(
        context,
        "get_model_metadata",
        request.model_spec.name,
        self._runner.call(
            get_model_metadata_impl.get_model_metadata, self._core, request
        ),
    )


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService."""

  def __init__(
      self, core: server_core_lib.ServerCore, runner: model_runner.ModelRunner
  ):
    self._core = core
    self._runner = runner

  async def GetModelStatus(self, request, context):
    return await _run(
        context,
        "get_model_status",
        request.model_spec.name,
        self._runner.call(
            get_model_status_impl.get_model_status, self._core.monitor, request
        ),
    )

  async def HandleReloadConfigRequest(self, request, context):
    return await self._runner.call(self._reload_config, request, context)

  def _reload_config(self, request, context):
    response = model_management_pb2.ReloadConfigResponse()
    try:
      # As upstream's model_service_impl: only a ModelConfigList is accepted.
      if request.config.WhichOneof("config") != "model_config_list":
        raise status.invalid_argument(
            "ServerModelConfig type not supported by "
            "HandleReloadConfigRequest. Only ModelConfigList is currently "
            "supported"
        )
      self._core.reload_config(request.config)
    except status.ServingError as exc:
      response.status.error_code = int(exc.code)
      response.status.error_message = exc.message
      context.set_code(grpc.StatusCode[exc.code.name])
      context.set_details(exc.message)
    return response


def add_services(
    server: Any,
    core: server_core_lib.ServerCore,
    runner: model_runner.ModelRunner,
    use_tensor_content: bool,
) -> None:
  """Registers both services on a grpc_h2 (or grpc.aio) server."""
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(core, runner, use_tensor_content), server
  )
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelService(core, runner), server
  )
