r"""The REST baseline: a hand-written FastAPI + uvicorn model server.

What a Python user typically writes instead of running a model server: load
the SavedModel with `tf.saved_model.load`, validate the body with a pydantic
model, call the signature inline in an `async def` endpoint, return JSON. It
speaks the same request/response format as TensorFlow Serving's REST Predict
(row format), so the same load test drives both.

uvicorn runs one worker on uvloop with the httptools parser (what
`uvicorn[standard]` installs and its `auto` settings pick; named here so a
missing package fails instead of silently falling back to asyncio and h11)
and no access log, the fastest setting a user would pick for a benchmark.

  python -m tensorflow_serving.tools.benchmark.baselines.fastapi_server \
      --port=8501 --model_name=mnist --model_base_path=/tmp/mnist
"""

from __future__ import annotations

from absl import app
from absl import flags
import fastapi
import pydantic

from tensorflow_serving.tools.benchmark.baselines import common

flags.DEFINE_string("host", "127.0.0.1", "Address to listen on.")
flags.DEFINE_integer("port", 8501, "Port to listen on.")
flags.DEFINE_string("model_name", "mnist", "Name in the URL path.")
flags.DEFINE_string("model_base_path", "", "Directory of version dirs.")
FLAGS = flags.FLAGS


class PredictRequest(pydantic.BaseModel):
  """The row-format body; FastAPI validates it before the endpoint runs."""

  signature_name: str = "serving_default"
  instances: list[list[float]]


def create_app(model_name: str, model_base_path: str) -> fastapi.FastAPI:
  """The FastAPI app serving POST /v1/models/<model_name>:predict."""
  # Imported here so `--help` and flag errors are instant.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  _, model = common.load_model(model_base_path)
  api = fastapi.FastAPI()

  # No return annotation: FastAPI would make it a response_model and
  # validate every response again, which a typical endpoint does not do.
  @api.post(f"/v1/models/{model_name}:predict")
  async def predict(request: PredictRequest):  # pylint: disable=unused-variable
    signature = model.signatures.get(request.signature_name)
    if signature is None:
      raise fastapi.HTTPException(
          status_code=400,
          detail=f"unknown signature {request.signature_name!r}",
      )
    (input_name,) = signature.structured_input_signature[1]
    outputs = signature(
        **{input_name: tf.constant(request.instances, dtype=tf.float32)}
    )
    if len(outputs) == 1:
      (scores,) = outputs.values()
      return {"predictions": scores.numpy().tolist()}
    return {
        "predictions": {
            name: value.numpy().tolist() for name, value in outputs.items()
        }
    }

  return api


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.model_base_path:
    raise app.UsageError("--model_base_path is required")
  import uvicorn  # pylint: disable=g-import-not-at-top

  uvicorn.run(
      create_app(FLAGS.model_name, FLAGS.model_base_path),
      host=FLAGS.host,
      port=FLAGS.port,
      workers=1,
      loop="uvloop",
      http="httptools",
      log_level="warning",
      access_log=False,
  )


if __name__ == "__main__":
  app.run(main)
