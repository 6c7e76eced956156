"""gRPC `inference.GRPCInferenceService`, decoding its messages around the pipeline.

Registered on the server's own gRPC transport (util/net/grpc_h2) beside
PredictionService and ModelService. Only the methods implemented here are
registered, so any other method of Triton's service (streaming, shared
memory, statistics, tracing) answers UNIMPLEMENTED as gRPC does for an
unknown method. A ServingError ends the call with its code and message.
"""

from __future__ import annotations

from typing import Any

import grpc

from tensorflow_serving.model_servers import access_token
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers.v2 import grpc_codec
from tensorflow_serving.model_servers.v2 import inference
from tensorflow_serving.model_servers.v2 import repository as repository_lib
from tensorflow_serving.model_servers.v2 import stubs
from tensorflow_serving.util import status

SERVICE_NAME = "inference.GRPCInferenceService"


class GRPCInferenceService:
  """The Open Inference Protocol's gRPC methods over one pipeline."""

  def __init__(
      self,
      pipeline: pipeline_lib.Pipeline,
      repository: repository_lib.ModelRepository,
      token: str | None = None,
  ):
    self._pipeline = pipeline
    self._core = pipeline.core
    self._repository = repository
    # Beyond upstream: repository load/unload need it when set.
    self._token = access_token.encoded(token)

  async def ServerLive(self, request, context):
    return stubs.service_pb2.ServerLiveResponse(live=True)

  async def ServerReady(self, request, context):
    return stubs.service_pb2.ServerReadyResponse(
        ready=inference.server_ready(self._core)
    )

  async def ModelReady(self, request, context):
    return await grpc_services.answer(context, self._model_ready(request))

  async def _model_ready(self, request) -> Any:
    spec = inference.model_spec(request.name, request.version)
    return stubs.service_pb2.ModelReadyResponse(
        ready=inference.model_ready(self._core, spec)
    )

  async def ServerMetadata(self, request, context):
    return stubs.service_pb2.ServerMetadataResponse(
        name=inference.SERVER_NAME,
        version=inference.server_version(),
        extensions=list(inference.EXTENSIONS),
    )

  async def ModelMetadata(self, request, context):
    return await grpc_services.answer(context, self._model_metadata(request))

  async def _model_metadata(self, request) -> Any:
    spec = inference.model_spec(request.name, request.version)
    # The request has no parameters: metadata is serving_default's.
    meta = await self._pipeline.runner.call(
        inference.model_metadata, self._core, spec, ""
    )
    return grpc_codec.metadata_response(meta)

  async def ModelInfer(self, request, context):
    return await grpc_services.answer(
        context, self._infer(request, grpc_services.call_deadline(context))
    )

  async def _infer(self, request, deadline: float | None) -> Any:
    spec = inference.model_spec(request.model_name, request.model_version)
    served = await self._pipeline.predict(
        spec,
        lambda lookup: grpc_codec.decode_infer(request, lookup),
        pipeline_lib.GRPC,
        label=inference.API_LABEL,
        api=inference.SIGNATURE_API,
        deadline=deadline,
    )
    return grpc_codec.encode_infer(
        served.request, served.outputs, served.id.name, served.id.version
    )

  async def RepositoryIndex(self, request, context):
    return await grpc_services.answer(context, self._index(request))

  async def _index(self, request) -> Any:
    entries = await self._pipeline.runner.call(
        self._repository.index, request.ready
    )
    response = stubs.service_pb2.RepositoryIndexResponse()
    for e in entries:
      response.models.add(
          name=e.name, version=e.version, state=e.state, reason=e.reason
      )
    return response

  async def RepositoryModelLoad(self, request, context):
    return await grpc_services.answer(
        context,
        self._allowed_then(
            context, "RepositoryModelLoad", lambda: self._load(request, context)
        ),
    )

  async def _allowed_then(self, context, call: str, work) -> Any:
    if not access_token.grpc_call_allowed(context, self._token):
      raise access_token.refusal(call)
    return await work()

  async def _load(self, request, context) -> Any:
    config = None
    if "config" in request.parameters:
      param = request.parameters["config"]
      choice = param.WhichOneof("parameter_choice")
      if choice == "string_param":
        config = param.string_param
      elif choice == "bytes_param":
        config = param.bytes_param.decode("utf-8", "replace")
      else:
        raise status.invalid_argument(
            "The 'config' parameter must be a string holding a ModelConfig "
            "in JSON form"
        )
    # Bounded by the call's deadline, as HandleReloadConfigRequest.
    await self._repository.load(
        request.model_name, config, context.time_remaining()
    )
    return stubs.service_pb2.RepositoryModelLoadResponse()

  async def RepositoryModelUnload(self, request, context):
    return await grpc_services.answer(
        context,
        self._allowed_then(
            context,
            "RepositoryModelUnload",
            lambda: self._unload(request, context),
        ),
    )

  async def _unload(self, request, context) -> Any:
    await self._repository.unload(request.model_name, context.time_remaining())
    return stubs.service_pb2.RepositoryModelUnloadResponse()


_METHODS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
)


def add_service(server: Any, servicer: GRPCInferenceService) -> None:
  """Registers the implemented methods, with the generated messages' codecs.

  Raises ImportError when the generated stubs are not installed.
  """
  if stubs.MISSING is not None:
    raise stubs.MISSING
  descriptor = stubs.service_pb2.DESCRIPTOR.services_by_name[
      "GRPCInferenceService"
  ]
  handlers = {}
  for name in _METHODS:
    method = descriptor.methods_by_name[name]
    request_class = getattr(stubs.service_pb2, method.input_type.name)
    response_class = getattr(stubs.service_pb2, method.output_type.name)
    handlers[name] = grpc.unary_unary_rpc_method_handler(
        getattr(servicer, name),
        request_deserializer=request_class.FromString,
        response_serializer=response_class.SerializeToString,
    )
  server.add_generic_rpc_handlers(
      (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
  )
