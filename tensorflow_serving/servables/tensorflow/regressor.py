"""Regress: serialized tf.Examples in, one float per example out.

`run_regress` serves gRPC and warmup over protos; `regress_serialized` serves
REST. Output validation follows upstream regressor.cc's messages and is shared
with MultiInference through `prepare_regression` / `fill_regression_result`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

OUTPUTS = "outputs"


def prepare_regression(
    sig: signature_lib.Signature,
) -> example_input.ExampleSignature:
  """Checks `sig` can regress and says what to feed and fetch."""
  example_input.check_method_name(
      sig, signature_lib.REGRESS_METHOD_NAME, "regression"
  )
  input_alias = example_input.example_input_alias(sig)
  if len(sig.outputs) != 1:
    raise status.invalid_argument("Expected one output Tensor.")
  if OUTPUTS not in sig.outputs:
    raise status.failed_precondition(
        f"No regression outputs found in SignatureDef: {sig.key} expects the "
        f"output '{OUTPUTS}' but has "
        f"{saved_model_bundle.format_alias_set(sig.outputs)}"
    )
  return example_input.ExampleSignature(sig, input_alias, (OUTPUTS,))


def values_from_outputs(
    num_examples: int, outputs: Mapping[str, np.ndarray]
) -> np.ndarray:
  """The float32 `[N]` regression values after upstream's checks."""
  value = outputs[OUTPUTS]
  if not (value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1)):
    raise status.invalid_argument(
        "Expected output Tensor shape to be either [batch_size] or "
        f"[batch_size, 1] but got {example_input.shape_str(value.shape)}"
    )
  if value.shape[0] != num_examples:
    raise status.invalid_argument(
        "Input batch size did not match output batch size: "
        f"{num_examples} vs. {value.shape[0]}"
    )
  got_dtype = example_input.dtype_name(value)
  if got_dtype != "DT_FLOAT":
    raise status.invalid_argument(
        f"Expected output Tensor of DT_FLOAT.  Got: {got_dtype}"
    )
  return value.reshape(num_examples)


def fill_regression_result(
    num_examples: int,
    outputs: Mapping[str, np.ndarray],
    result: regression_pb2.RegressionResult,
) -> None:
  """Appends one Regression per example to `result`."""
  for value in values_from_outputs(num_examples, outputs).tolist():
    result.regressions.add(value=value)


def resolve_regression_signature(
    bundle: saved_model_bundle.SavedModelBundle, signature_name: str
) -> example_input.ExampleSignature:
  return prepare_regression(
      example_input.resolve_signature(bundle, signature_name)
  )


def run_regress(
    bundle: saved_model_bundle.SavedModelBundle,
    request: regression_pb2.RegressionRequest,
    response: regression_pb2.RegressionResponse,
) -> None:
  """Fills `response.result` and the signature name of its model_spec."""
  prepared = resolve_regression_signature(
      bundle, request.model_spec.signature_name
  )
  examples = example_input.serialized_examples(request.input)
  outputs = example_input.run(bundle, prepared, examples)
  fill_regression_result(len(examples), outputs, response.result)
  response.model_spec.signature_name = prepared.sig.key


def regress_serialized(
    bundle: saved_model_bundle.SavedModelBundle,
    signature_name: str,
    examples: Sequence[bytes],
    context: bytes | None = None,
) -> np.ndarray:
  """Regress for REST: float32 `[N]` values, which
  `json_tensor.format_regress_response` writes without widening."""
  prepared = resolve_regression_signature(bundle, signature_name)
  tensor = example_input.examples_tensor(examples, context)
  return values_from_outputs(
      len(tensor), example_input.run(bundle, prepared, tensor)
  )


def replay_regress_log(
    bundle: saved_model_bundle.SavedModelBundle,
    log: prediction_log_pb2.PredictionLog,
) -> None:
  """Warmup replayer for `regress_log` (the logged response is ignored)."""
  run_regress(
      bundle, log.regress_log.request, regression_pb2.RegressionResponse()
  )
