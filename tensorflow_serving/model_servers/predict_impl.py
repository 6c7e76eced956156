"""Predict for the servers: resolve the ModelSpec, then run on the servable."""

from __future__ import annotations

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import servable_for_request
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import predict_util


async def predict(
    core: server_core_lib.ServerCore,
    request: predict_pb2.PredictRequest,
    runner: model_runner.ModelRunner,
    use_tensor_content: bool = False,
) -> predict_pb2.PredictResponse:
  """Predict on the event loop: only the model run is awaited.

  Decoding and encoding are numpy over the proto's buffers, cheap enough for
  the loop; the run goes to a batch (or a worker thread) via `runner`.
  """
  response = predict_pb2.PredictResponse()
  with servable_for_request.servable_for_request(
      core, request, response
  ) as servable:
    sig, inputs, output_filter = predict_util.decode_predict_request(
        servable, request
    )
    outputs = await runner.run(servable, sig, inputs, output_filter)
    predict_util.encode_predict_response(
        sig, outputs, response, use_tensor_content
    )
  return response
