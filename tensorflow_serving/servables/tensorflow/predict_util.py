"""Predict over protos: PredictRequest in, PredictResponse out, no transport.

The gRPC service and warmup replay call this; REST decodes JSON straight to
numpy and calls `SavedModelBundle.run`, so both share validation and messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import status


def resolve_predict_signature(
    bundle: saved_model_bundle.SavedModelBundle, signature_name: str
) -> signature_lib.Signature:
  key = signature_name or signature_lib.DEFAULT_SERVING_SIGNATURE_DEF_KEY
  sig = bundle.signatures.get(key)
  if sig is None:
    # Upstream (predict_util.cc) reports a missing Predict signature as
    # FAILED_PRECONDITION, unlike Classify/Regress.
    raise status.failed_precondition(
        f'Serving signature key "{key}" not found.'
    )
  return sig


def decode_predict_request(
    bundle: saved_model_bundle.SavedModelBundle,
    request: predict_pb2.PredictRequest,
) -> tuple[signature_lib.Signature, dict[str, np.ndarray], tuple[str, ...]]:
  """The request's signature, its inputs as numpy arrays, and output filter."""
  sig = resolve_predict_signature(bundle, request.model_spec.signature_name)
  inputs = {}
  for alias, proto in request.inputs.items():
    try:
      inputs[alias] = tensor_codec.tensor_proto_to_ndarray(proto)
    except status.ServingError as exc:
      # Upstream's exact message (clients match on it); the cause is chained.
      raise status.invalid_argument(f"tensor parsing error: {alias}") from exc
  return sig, inputs, tuple(request.output_filter)


def encode_predict_response(
    sig: signature_lib.Signature,
    outputs: Mapping[str, np.ndarray],
    response: predict_pb2.PredictResponse,
    use_tensor_content: bool = False,
) -> None:
  """Fills `response.outputs` (and the signature name of its model_spec)."""
  response.model_spec.signature_name = sig.key
  for alias, value in outputs.items():
    tensor_codec.ndarray_to_tensor_proto(
        value,
        use_tensor_content=use_tensor_content,
        out=response.outputs[alias],
    )


def run_predict(
    bundle: saved_model_bundle.SavedModelBundle,
    request: predict_pb2.PredictRequest,
    response: predict_pb2.PredictResponse,
    use_tensor_content: bool = False,
) -> None:
  """Decodes, runs and encodes one Predict in the calling thread."""
  sig, inputs, output_filter = decode_predict_request(bundle, request)
  outputs = bundle.run(sig, inputs, output_filter)
  encode_predict_response(sig, outputs, response, use_tensor_content)
