"""gRPC: PredictionService and ModelService, decoding protos around the pipeline.

The servicers are coroutines (grpc.aio style) on the server's event loop
(util/net/grpc_h2). Each one only turns its request proto into numpy (or
serialized Examples) for the shared pipeline and the result back into its
response proto; a ServingError becomes the gRPC status with the same code
and message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import time
from typing import Any, TypeVar

from absl import logging
import grpc

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.model_servers import access_token
from tensorflow_serving.model_servers import admission
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers import tracing as tracing_lib
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.util import status

T = TypeVar("T")
GRPC = pipeline_lib.GRPC


async def answer(context: Any, work: Awaitable[T]) -> T:
  """Awaits one RPC's work; a ServingError ends the call with its status.

  A refusal under load carries gRPC's server pushback trailer, which a
  client's retry policy waits for before its next attempt.
  """
  try:
    return await work
  except status.ServingError as exc:
    trailers = ()
    if exc.retry_after_s is not None:
      trailers = (
          (
              "grpc-retry-pushback-ms",
              admission.retry_pushback_ms(exc.retry_after_s),
          ),
      )
    await context.abort(grpc.StatusCode[exc.code.name], exc.message, trailers)
  except Exception as exc:  # pylint: disable=broad-except
    logging.exception("Unexpected error in a gRPC call")
    await context.abort(
        grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"
    )
  raise AssertionError("context.abort returned")  # pragma: no cover


def call_deadline(context: Any) -> float | None:
  """The call's deadline (grpc-timeout) on time.monotonic's clock."""
  remaining = context.time_remaining()
  return None if remaining is None else time.monotonic() + remaining


def _check_model_spec(request: Any) -> None:
  if not request.HasField("model_spec"):
    raise status.invalid_argument("Missing ModelSpec")


def _echo_spec(response: Any, served_id: Any) -> None:
  """Responses echo the effective ModelSpec: name and resolved version."""
  response.model_spec.name = served_id.name
  response.model_spec.version.value = served_id.version


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService."""

  def __init__(
      self, pipeline: pipeline_lib.Pipeline, use_tensor_content: bool = False
  ):
    self._pipeline = pipeline
    self._use_tensor_content = use_tensor_content

  def _traced(
      self, context: Any, api: str, make: Callable[[Any], Awaitable[T]]
  ) -> Awaitable[T]:
    """`make(trace)`, traced when tracing is on and samples this call."""
    tracing = self._pipeline.tracing
    if tracing is None:
      return make(None)
    trace = tracing.start(api, GRPC, context.invocation_metadata())
    if trace is None:
      return make(None)
    return tracing_lib.traced(trace, make(trace))

  async def Predict(self, request, context):
    deadline = call_deadline(context)
    return await answer(
        context,
        self._traced(
            context,
            "Predict",
            lambda trace: self._predict(request, trace, deadline),
        ),
    )

  async def _predict(
      self,
      request: predict_pb2.PredictRequest,
      trace: Any = None,
      deadline: float | None = None,
  ) -> predict_pb2.PredictResponse:
    _check_model_spec(request)
    served = await self._pipeline.predict(
        request.model_spec,
        lambda lookup: predict_util.decode_predict_request(request, lookup),
        GRPC,
        api=pipeline_lib.Api.PREDICT,
        trace=trace,
        deadline=deadline,
    )
    start = time.time_ns() if trace is not None else 0
    response = predict_pb2.PredictResponse()
    _echo_spec(response, served.id)
    predict_util.encode_predict_response(
        served.request.sig,
        served.outputs,
        response,
        self._use_tensor_content,
    )
    if trace is not None:
      trace.child("encode", start, time.time_ns())
    return response

  async def Classify(self, request, context):
    deadline = call_deadline(context)
    return await answer(
        context,
        self._traced(
            context,
            "Classify",
            lambda trace: self._examples_api(
                request,
                self._pipeline.classify,
                classification_pb2.ClassificationResponse(),
                lambda served, result: classifier.fill_classification_result(
                    served.classifications, result
                ),
                trace,
                deadline,
            ),
        ),
    )

  async def Regress(self, request, context):
    deadline = call_deadline(context)
    return await answer(
        context,
        self._traced(
            context,
            "Regress",
            lambda trace: self._examples_api(
                request,
                self._pipeline.regress,
                regression_pb2.RegressionResponse(),
                lambda served, result: regressor.fill_regression_result(
                    served.values, result
                ),
                trace,
                deadline,
            ),
        ),
    )

  async def _examples_api(
      self,
      request: Any,
      run,
      response: Any,
      fill,
      trace: Any = None,
      deadline: float | None = None,
  ) -> Any:
    """Classify and Regress: Examples in, a result filled into `response`."""
    _check_model_spec(request)
    served = await run(
        request.model_spec,
        lambda lookup: _examples(request, lookup),
        GRPC,
        trace=trace,
        deadline=deadline,
    )
    start = time.time_ns() if trace is not None else 0
    _echo_spec(response, served.id)
    response.model_spec.signature_name = served.sig.key
    fill(served, response.result)
    if trace is not None:
      trace.child("encode", start, time.time_ns())
    return response

  async def MultiInference(self, request, context):
    return await answer(context, self._pipeline.multi_inference(request))

  async def GetModelMetadata(self, request, context):
    return await answer(
        context,
        self._pipeline.runner.call(self._pipeline.get_model_metadata, request),
    )


def _examples(request: Any, lookup: pipeline_lib.SignatureLookup):
  """Upstream's order: the signature first, then the request's Input."""
  sig = lookup(request.model_spec.signature_name)
  return sig, example_input.serialized_examples(request.input)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService.

  With `token` set (beyond upstream, --model_service_token_file), the calls
  that change what is served need `authorization: Bearer TOKEN` metadata;
  reading model status stays open, as the REST API's is.
  """

  def __init__(self, pipeline: pipeline_lib.Pipeline, token: str | None = None):
    self._pipeline = pipeline
    self._token = access_token.encoded(token)

  async def GetModelStatus(self, request, context):
    return await answer(
        context, self._pipeline.models.get_model_status(request)
    )

  async def HandleReloadConfigRequest(self, request, context):
    """Upstream's reload, bounded by the call's deadline (control_plane.py)."""
    if not access_token.grpc_call_allowed(context, self._token):
      await context.abort(
          grpc.StatusCode.UNAUTHENTICATED,
          access_token.refusal("HandleReloadConfigRequest").message,
      )
    response = model_management_pb2.ReloadConfigResponse()
    try:
      # As upstream's model_service_impl: only a ModelConfigList is accepted.
      if request.config.WhichOneof("config") != "model_config_list":
        raise status.invalid_argument(
            "ServerModelConfig type not supported by "
            "HandleReloadConfigRequest. Only ModelConfigList is currently "
            "supported"
        )
      await self._pipeline.control.reload_config(
          request.config, _time_remaining(context)
      )
    except status.ServingError as exc:
      response.status.error_code = int(exc.code)
      response.status.error_message = exc.message
      context.set_code(grpc.StatusCode[exc.code.name])
      context.set_details(exc.message)
    return response


# The services add_services registers, by full name. Their descriptor modules
# are imported for this (the *_pb2_grpc modules do not import them), which
# also puts the services in the pool that server reflection describes.
SERVICE_NAMES = (
    prediction_service_pb2.DESCRIPTOR.services_by_name[
        "PredictionService"
    ].full_name,
    model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)


def _time_remaining(context: Any) -> float | None:
  """The call's deadline in seconds from now, if the client set one."""
  remaining = getattr(context, "time_remaining", None)
  return remaining() if remaining is not None else None


def add_services(
    server: Any,
    pipeline: pipeline_lib.Pipeline,
    use_tensor_content: bool,
    model_service_token: str | None = None,
) -> None:
  """Registers both services on a grpc_h2 (or grpc.aio) server."""
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(pipeline, use_tensor_content), server
  )
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelService(pipeline, model_service_token), server
  )
