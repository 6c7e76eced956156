"""Classify: serialized tf.Examples in, (label, score) pairs per example out.

The servers' request pipeline, warmup (`run_classify`) and MultiInference
share the signature checks (`prepare_classification`) and the output
validation (`classifications_from_outputs`), with upstream classifier.cc's
messages; each transport only encodes the resulting (label, score) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import servable as servable_lib
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

CLASSES = "classes"
SCORES = "scores"

# Per example, (label, score) for each class. Labels are the model's bytes.
Classifications = list[list[tuple[bytes, float]]]


def prepare_classification(
    sig: signature_lib.Signature,
) -> example_input.ExampleSignature:
  """Checks `sig` can classify and says what to feed and fetch."""
  example_input.check_method_name(
      sig, signature_lib.CLASSIFY_METHOD_NAME, "classification"
  )
  input_alias = example_input.example_input_alias(sig)
  if len(sig.outputs) not in (1, 2):
    raise status.invalid_argument(
        f"Expected one or two output Tensors, found {len(sig.outputs)}"
    )
  outputs = tuple(a for a in (CLASSES, SCORES) if a in sig.outputs)
  if not outputs:
    raise status.failed_precondition(
        f"Expected classification signature outputs to contain at least one "
        f'of "{CLASSES}" or "{SCORES}". Signature was: {sig.key} with outputs '
        f"{saved_model_bundle.format_alias_set(sig.outputs)}"
    )
  return example_input.ExampleSignature(sig, input_alias, outputs)


def _check_matrix(
    name: str, value: np.ndarray, want_dtype: str, num_examples: int
) -> None:
  if value.ndim != 2:
    raise status.invalid_argument(
        "Expected Tensor shape: [batch_size num_classes] but got "
        f"{example_input.shape_str(value.shape)}"
    )
  got_dtype = example_input.dtype_name(value)
  if got_dtype != want_dtype:
    raise status.invalid_argument(
        f"Expected {name} Tensor of {want_dtype}. Got: {got_dtype}"
    )
  if value.shape[0] != num_examples:
    raise status.invalid_argument(
        f"Expected {name} output batch size of {num_examples}. "
        f"Got: {value.shape[0]}"
    )


def _validated_outputs(
    num_examples: int, outputs: Mapping[str, np.ndarray]
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
  """(classes, scores, num_classes) after upstream's shape and dtype checks."""
  classes = outputs.get(CLASSES)
  scores = outputs.get(SCORES)
  if classes is not None:
    _check_matrix("classes", classes, "DT_STRING", num_examples)
  if scores is not None:
    _check_matrix("scores", scores, "DT_FLOAT", num_examples)
  if classes is not None and scores is not None:
    if classes.shape[1] != scores.shape[1]:
      raise status.invalid_argument(
          "Tensors class and score should match in dim_size(1). Got "
          f"{classes.shape[1]} vs. {scores.shape[1]}"
      )
  reference = classes if classes is not None else scores
  return classes, scores, (reference.shape[1] if reference is not None else 0)


def _labels(
    classes: np.ndarray | None, num_examples: int, num_classes: int
) -> list[list[bytes]]:
  if classes is None:
    return [[b""] * num_classes for _ in range(num_examples)]
  return classes.tolist()


def _scores(
    scores: np.ndarray | None, num_examples: int, num_classes: int
) -> list[list[float]]:
  if scores is None:
    return [[0.0] * num_classes for _ in range(num_examples)]
  return scores.tolist()


def classifications_from_outputs(
    num_examples: int, outputs: Mapping[str, np.ndarray]
) -> Classifications:
  """Validated (label, score) pairs per example from `classes`/`scores`.

  A missing `classes` output gives empty labels, a missing `scores` 0.
  """
  classes, scores, k = _validated_outputs(num_examples, outputs)
  return [
      list(zip(labels, row))
      for labels, row in zip(
          _labels(classes, num_examples, k), _scores(scores, num_examples, k)
      )
  ]


def fill_classification_result(
    classifications: Classifications,
    result: classification_pb2.ClassificationResult,
) -> None:
  """Appends one Classifications per example to `result`."""
  for pairs in classifications:
    entry = result.classifications.add()
    for label, score in pairs:
      # `label` is a proto string; labels that are not UTF-8 (upstream sends
      # them as raw bytes) get replacement characters instead of failing.
      entry.classes.add(label=label.decode("utf-8", "replace"), score=score)


def classify(
    bundle: servable_lib.Servable, signature_name: str, examples: np.ndarray
) -> Classifications:
  """Classifies serialized Examples in the calling thread (warmup, tests).

  The servers' pipeline does the same steps around an awaited run.
  """
  prepared = prepare_classification(
      signature_lib.resolve(
          bundle.signatures, signature_name, signature_lib.Api.CLASSIFY
      )
  )
  return classifications_from_outputs(
      len(examples), example_input.run(bundle, prepared, examples)
  )


def run_classify(
    bundle: servable_lib.Servable,
    request: classification_pb2.ClassificationRequest,
    response: classification_pb2.ClassificationResponse,
) -> None:
  """ClassificationRequest in, result out, in the calling thread (warmup)."""
  name = request.model_spec.signature_name
  sig = signature_lib.resolve(
      bundle.signatures, name, signature_lib.Api.CLASSIFY
  )
  prepare_classification(sig)  # Signature errors before input errors.
  results = classify(
      bundle, name, example_input.serialized_examples(request.input)
  )
  fill_classification_result(results, response.result)
  response.model_spec.signature_name = sig.key


def replay_classify_log(
    bundle: servable_lib.Servable,
    log: prediction_log_pb2.PredictionLog,
) -> None:
  """Warmup replayer for `classify_log` (the logged response is ignored)."""
  run_classify(
      bundle,
      log.classify_log.request,
      classification_pb2.ClassificationResponse(),
  )
