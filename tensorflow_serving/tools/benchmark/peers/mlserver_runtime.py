"""A custom MLServer runtime serving a SavedModel signature with TensorFlow.

MLServer ships no TensorFlow runtime (SeldonIO/MLServer#250), so a v2 user
writes one like this, the way MLServer's custom-runtime docs show: load in
`load()`, decode the v2 inputs with the numpy codec, run, encode. MLServer's
adaptive batching (max_batch_size, max_batch_time in model-settings.json)
stacks queued requests into one call of `predict` and splits the answer.

Runs in the MLServer venv (setup_mlserver.sh), never under Bazel.
"""

from __future__ import annotations

import mlserver
import mlserver.codecs
import mlserver.types
import tensorflow as tf


class SavedModelRuntime(mlserver.MLModel):
  """One signature of a SavedModel; inputs and outputs by tensor name."""

  async def load(self) -> bool:
    params = self.settings.parameters
    path = params.uri
    extra = params.extra or {}
    self._signature = tf.saved_model.load(path).signatures[
        extra.get("signature_name", "serving_default")
    ]
    # Run once so that the first request does not pay for tracing.
    inputs = self._signature.structured_input_signature[1]
    self._signature(
        **{
            name: tf.zeros([1, *spec.shape[1:]], spec.dtype)
            for name, spec in inputs.items()
        }
    )
    return True

  async def predict(
      self, payload: mlserver.types.InferenceRequest
  ) -> mlserver.types.InferenceResponse:
    feeds = {
        item.name: tf.constant(mlserver.codecs.NumpyCodec.decode_input(item))
        for item in payload.inputs
    }
    results = self._signature(**feeds)
    return mlserver.types.InferenceResponse(
        model_name=self.name,
        outputs=[
            mlserver.codecs.NumpyCodec.encode_output(name, tensor.numpy())
            for name, tensor in results.items()
        ],
    )
