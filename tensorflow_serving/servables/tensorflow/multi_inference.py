"""MultiInference: several classify/regress signatures over one shared input.

The point of the API is to parse and run the examples once for all tasks, so
every task is checked first, the input is serialized once, and all outputs
are fetched in a single Session run that feeds the same string tensor to each
distinct input tensor. (Upstream rejects tasks whose input tensors differ with
`Input tensor must be the same for all Signatures.`; feeding each is a strict
extension that still takes one run.)
"""

from __future__ import annotations

from tensorflow.core.protobuf import meta_graph_pb2

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

NO_TASKS_MESSAGE = "MultiInferenceRequest must have at least one task"

# Callables for combined runs are cached by the bundle under this key plus
# the feed and fetch tensor names; the NUL keeps it apart from real keys.
_COMBINED_KEY = "\0multi_inference"


def _prepare(
    task: inference_pb2.InferenceTask, sig: signature_lib.Signature
) -> example_input.ExampleSignature:
  if task.method_name == signature_lib.CLASSIFY_METHOD_NAME:
    return classifier.prepare_classification(sig)
  if task.method_name == signature_lib.REGRESS_METHOD_NAME:
    return regressor.prepare_regression(sig)
  raise status.unimplemented(
      f"Unsupported signature method_name: {task.method_name}"
  )


def _prepare_tasks(
    bundle: saved_model_bundle.SavedModelBundle,
    request: inference_pb2.MultiInferenceRequest,
) -> list[example_input.ExampleSignature]:
  """Upstream's per-task checks, in its order, before any work is done."""
  if not request.tasks:
    raise status.invalid_argument(NO_TASKS_MESSAGE)
  model_name = ""
  seen: set[str] = set()
  prepared = []
  for task in request.tasks:
    name = task.model_spec.name
    if not name:
      raise status.invalid_argument("Found ModelSpec with an empty model name.")
    if not model_name:
      model_name = name
    elif name != model_name:
      raise status.invalid_argument(
          "All ModelSpecs in a MultiInferenceRequest must access the same "
          "model name."
      )
    key = (
        task.model_spec.signature_name
        or signature_lib.DEFAULT_SERVING_SIGNATURE_DEF_KEY
    )
    if key in seen:
      raise status.invalid_argument(f"Duplicate evaluation of signature: {key}")
    seen.add(key)
    sig = signature_lib.resolve(
        bundle.signatures, key, signature_lib.Api.MULTI_INFERENCE
    )
    prepared.append(_prepare(task, sig))
  return prepared


def _combined_signature(
    prepared: list[example_input.ExampleSignature],
) -> signature_lib.Signature:
  """One pseudo-signature over every task, keyed by tensor name.

  Keying by tensor name merges tasks that share an input or an output tensor,
  so each is fed or fetched once.
  """
  inputs = {}
  outputs = {}
  for entry in prepared:
    spec = entry.sig.inputs[entry.input_alias]
    inputs[spec.tensor_name] = signature_lib.TensorSpec(
        spec.tensor_name, spec.tensor_name, spec.tf_dtype, spec.shape
    )
    for alias in entry.output_aliases:
      spec = entry.sig.outputs[alias]
      outputs[spec.tensor_name] = signature_lib.TensorSpec(
          spec.tensor_name, spec.tensor_name, spec.tf_dtype, spec.shape
      )
  return signature_lib.Signature(
      key=_COMBINED_KEY,
      method_name="",
      inputs=dict(sorted(inputs.items())),
      outputs=dict(sorted(outputs.items())),
      defaults=frozenset(),
      proto=meta_graph_pb2.SignatureDef(),
  )


def run_multi_inference(
    bundle: saved_model_bundle.SavedModelBundle,
    request: inference_pb2.MultiInferenceRequest,
    response: inference_pb2.MultiInferenceResponse,
    version: int | None = None,
) -> None:
  """Appends one InferenceResult per task, in task order.

  `version` (the served version) is echoed in each result's model_spec.
  """
  prepared = _prepare_tasks(bundle, request)
  examples = example_input.serialized_examples(request.input)
  combined = _combined_signature(prepared)
  by_tensor = bundle.run(combined, {name: examples for name in combined.inputs})
  num_examples = len(examples)
  for task, entry in zip(request.tasks, prepared):
    outputs = {
        alias: by_tensor[entry.sig.outputs[alias].tensor_name]
        for alias in entry.output_aliases
    }
    result = response.results.add()
    result.model_spec.name = task.model_spec.name
    result.model_spec.signature_name = entry.sig.key
    if version is not None:
      result.model_spec.version.value = version
    if task.method_name == signature_lib.CLASSIFY_METHOD_NAME:
      classifier.fill_classification_result(
          classifier.classifications_from_outputs(num_examples, outputs),
          result.classification_result,
      )
    else:
      regressor.fill_regression_result(
          regressor.values_from_outputs(num_examples, outputs),
          result.regression_result,
      )


def replay_multi_inference_log(
    bundle: saved_model_bundle.SavedModelBundle,
    log: prediction_log_pb2.PredictionLog,
) -> None:
  """Warmup replayer for `multi_inference_log` (the response is ignored)."""
  run_multi_inference(
      bundle,
      log.multi_inference_log.request,
      inference_pb2.MultiInferenceResponse(),
  )
