"""Predict's proto codec: PredictRequest to numpy, numpy to PredictResponse.

The gRPC servicer decodes and encodes with these around the shared request
pipeline (model_servers/pipeline.py); warmup replays logged PredictRequests
through `run_predict`. numpy is the middle type on every path, so REST
(util/json_tensor) meets the same validation and run without a proto detour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.servables.tensorflow import servable as servable_lib
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import status

SignatureLookup = Callable[[str], signature_lib.Signature]


class DecodedPredict(NamedTuple):
  """A Predict request as numpy: its signature, inputs and output filter."""

  sig: signature_lib.Signature
  inputs: dict[str, np.ndarray]
  output_filter: tuple[str, ...]


def decode_predict_request(
    request: predict_pb2.PredictRequest, lookup: SignatureLookup
) -> DecodedPredict:
  """Resolves the signature first, then parses the tensors, as upstream."""
  sig = lookup(request.model_spec.signature_name)
  inputs = {}
  for alias, proto in request.inputs.items():
    try:
      inputs[alias] = tensor_codec.tensor_proto_to_ndarray(proto)
    except status.ServingError as exc:
      # Upstream's exact message (clients match on it); the cause is chained.
      raise status.invalid_argument(f"tensor parsing error: {alias}") from exc
  return DecodedPredict(sig, inputs, tuple(request.output_filter))


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
    bundle: servable_lib.Servable,
    request: predict_pb2.PredictRequest,
    response: predict_pb2.PredictResponse,
    use_tensor_content: bool = False,
) -> None:
  """Decodes, runs and encodes one Predict in the calling thread (warmup)."""
  decoded = decode_predict_request(
      request,
      lambda name: signature_lib.resolve(
          bundle.signatures, name, signature_lib.Api.PREDICT
      ),
  )
  outputs = bundle.run(decoded.sig, decoded.inputs, decoded.output_filter)
  encode_predict_response(decoded.sig, outputs, response, use_tensor_content)
