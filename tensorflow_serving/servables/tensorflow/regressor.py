"""Regress: serialized tf.Examples in, one float per example out.

The servers' request pipeline, warmup (`run_regress`) and MultiInference
share the signature checks (`prepare_regression`) and the output validation
(`values_from_outputs`), with upstream regressor.cc's messages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import servable as servable_lib
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
    values: np.ndarray, result: regression_pb2.RegressionResult
) -> None:
  """Appends one Regression per value to `result`."""
  for value in values.tolist():
    result.regressions.add(value=value)


def regress(
    bundle: servable_lib.Servable, signature_name: str, examples: np.ndarray
) -> np.ndarray:
  """Float32 `[N]` values for serialized Examples, in the calling thread.

  The servers' pipeline does the same steps around an awaited run.
  """
  prepared = prepare_regression(
      signature_lib.resolve(
          bundle.signatures, signature_name, signature_lib.Api.REGRESS
      )
  )
  return values_from_outputs(
      len(examples), example_input.run(bundle, prepared, examples)
  )


def run_regress(
    bundle: servable_lib.Servable,
    request: regression_pb2.RegressionRequest,
    response: regression_pb2.RegressionResponse,
) -> None:
  """RegressionRequest in, result out, in the calling thread (warmup)."""
  name = request.model_spec.signature_name
  sig = signature_lib.resolve(
      bundle.signatures, name, signature_lib.Api.REGRESS
  )
  prepare_regression(sig)  # Signature errors before input errors.
  values = regress(
      bundle, name, example_input.serialized_examples(request.input)
  )
  fill_regression_result(values, response.result)
  response.model_spec.signature_name = sig.key


def replay_regress_log(
    bundle: servable_lib.Servable,
    log: prediction_log_pb2.PredictionLog,
) -> None:
  """Warmup replayer for `regress_log` (the logged response is ignored)."""
  run_regress(
      bundle, log.regress_log.request, regression_pb2.RegressionResponse()
  )
