r"""The gRPC baseline: a straightforward grpc.aio PredictionService.

The implementation a Python user would write from the official stubs:
`tf.make_ndarray` on each input, the signature called inline in the
coroutine, `tf.make_tensor_proto` on each output. One process, one event
loop, no batching, no thread pool.

  python -m tensorflow_serving.tools.benchmark.baselines.naive_grpc_server \
      --port=8500 --model_name=mnist --model_base_path=/tmp/mnist
"""

from __future__ import annotations

import asyncio

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark.baselines import common

flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
flags.DEFINE_integer("port", 8500, "Port to listen on.")
flags.DEFINE_string("model_name", "mnist", "Model name requests must use.")
flags.DEFINE_string("model_base_path", "", "Directory of version dirs.")
FLAGS = flags.FLAGS


async def serve(
    host: str, port: int, model_name: str, model_base_path: str
) -> None:
  """Serves Predict until the process is terminated."""
  # Heavy imports here so `--help` and flag errors are instant.
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

  version, model = common.load_model(model_base_path)

  class PredictionService(
      prediction_service_pb2_grpc.PredictionServiceServicer
  ):

    async def Predict(self, request, context):  # pylint: disable=invalid-name
      if request.model_spec.name != model_name:
        await context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"unknown model {request.model_spec.name!r}",
        )
      signature_name = request.model_spec.signature_name or "serving_default"
      signature = model.signatures.get(signature_name)
      if signature is None:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown signature {signature_name!r}",
        )
      inputs = {
          name: tf.constant(tf.make_ndarray(proto))
          for name, proto in request.inputs.items()
      }
      outputs = signature(**inputs)
      response = predict_pb2.PredictResponse()
      response.model_spec.name = model_name
      response.model_spec.version.value = version
      response.model_spec.signature_name = signature_name
      for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
      return response

  server = grpc.aio.server()
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(), server
  )
  server.add_insecure_port(f"{host}:{port}")
  await server.start()
  print(f"naive grpc.aio PredictionService on {host}:{port}", flush=True)
  await server.wait_for_termination()


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.model_base_path:
    raise app.UsageError("--model_base_path is required")
  asyncio.run(
      serve(FLAGS.host, FLAGS.port, FLAGS.model_name, FLAGS.model_base_path)
  )


if __name__ == "__main__":
  app.run(main)
