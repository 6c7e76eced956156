"""Classify and Regress bodies: JSON Examples in, results out.

Requests carry tf.Examples as JSON objects of features (upstream's types:
int64, float, bytes with `{"b64": ...}`); they are serialized here once, and
the optional `context` is kept apart, as upstream merges it only when
running the model.
"""

from __future__ import annotations

from collections.abc import Mapping
import functools
import math
from typing import Any, NamedTuple

import numpy as np
import orjson

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_response


class ExampleRequest(NamedTuple):
  """A parsed classify/regress body; examples are serialized tf.Examples."""

  signature_name: str
  context: bytes | None
  examples: list[bytes]


_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = "bytes", "float", "int64"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _feature_error(name: str, value: Any) -> status.ServingError:
  return status.invalid_argument(
      f"Feature: {name} has element with unexpected JSON type: "
      f"{document.json_type(value)}"
  )


def _feature_values(name: str, content: Any) -> tuple[str | None, list[Any]]:
  """(kind, values) of one feature, with upstream's type rules."""
  kind: str | None = None
  values: list[Any] = []
  items = content if isinstance(content, list) else [content]
  for value in items:
    if value is None or isinstance(value, list):
      raise _feature_error(name, value)
    if isinstance(value, bool):
      this_kind, value = _INT64_LIST, int(value)
    elif isinstance(value, dict):
      if not document.is_b64_object(value):
        raise _feature_error(name, value)
      this_kind = _BYTES_LIST
    elif isinstance(value, str):
      this_kind, value = _BYTES_LIST, value.encode("utf-8", "surrogatepass")
    elif (
        isinstance(value, int)
        and value <= document.UINT64_MAX
        and (value >= document.INT64_MIN)
    ):
      this_kind = _INT64_LIST
    else:  # Decimals, and integers too big for 64 bits (doubles upstream).
      this_kind, value = _FLOAT_LIST, float(value)
    if kind is not None and kind != this_kind:
      raise status.invalid_argument(
          f"Unexpected element type in feature: {name} expecting type: {kind}"
      )
    kind = this_kind
    if isinstance(value, dict):
      value = document.b64_decode(value)
    elif kind == _INT64_LIST and value > document.INT64_MAX:
      raise status.invalid_argument(
          f"Feature: {name} has uint64 element. Only int64 is supported."
      )
    elif (
        kind == _FLOAT_LIST
        and math.isfinite(value)
        and abs(value) > _FLOAT32_MAX
    ):
      raise status.invalid_argument(
          f"Cannot convert JSON value: {document.json_str(value)} to float without "
          "loss of precision."
      )
    values.append(value)
  return kind, values


@functools.cache
def _example_class():
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top

  return example_pb2.Example


def _make_example(value: Any) -> bytes:
  """A serialized tf.Example from a JSON object of features."""
  if not isinstance(value, dict):
    raise status.invalid_argument(
        f"Example must be JSON object but got JSON {document.json_type(value)}"
    )
  example = _example_class()()
  features = example.features.feature
  for name, content in value.items():
    kind, values = _feature_values(name, content)
    feature = features[name]
    if kind == _INT64_LIST:
      feature.int64_list.value.extend(values)
    elif kind == _FLOAT_LIST:
      feature.float_list.value.extend(values)
    elif kind == _BYTES_LIST:
      feature.bytes_list.value.extend(values)
  return example.SerializeToString()


def parse_example_request(doc: Mapping[str, Any]) -> ExampleRequest:
  """Parses a classify/regress body into serialized tf.Examples.

  `context` (if present) is returned separately: upstream merges it into
  each example only when running the model.
  """
  signature_name = document.get_signature_name(doc)
  context = None
  if "context" in doc:
    context = _make_example(doc["context"])
  if "examples" not in doc:
    raise status.invalid_argument(
        f"JSON Value: {document.json_str(doc)} When method is classify, key "
        "'examples' is expected and was not found"
    )
  examples = doc["examples"]
  if not isinstance(examples, list):
    raise status.invalid_argument(
        f"JSON Value: {document.json_str(doc)} Expecting 'examples' value to be an "
        "list/array"
    )
  if not examples:
    raise status.invalid_argument(
        f"JSON Value: {document.json_str(doc)} 'examples' value is an empty array"
    )
  return ExampleRequest(
      signature_name, context, [_make_example(e) for e in examples]
  )


def format_classify_response(classifications: Any) -> bytes:
  """{"results": [[[label, score], ...], ...]}.

  Takes a ClassificationResult proto (or anything with `.classifications`)
  or a sequence, per example, of (label, score) pairs.
  """
  per_example = getattr(classifications, "classifications", classifications)
  results = []
  for classes in per_example:
    classes = getattr(classes, "classes", classes)
    labels, scores = [], []
    for item in classes:
      if isinstance(item, (tuple, list)):
        label, score = item
      else:
        label, score = item.label, item.score
      if isinstance(label, bytes):
        label = label.decode("utf-8", "replace")
      labels.append(label)
      scores.append(score)
    score_json = predict_response.float32_json(
        np.array(scores, dtype=np.float32)
    )
    if isinstance(score_json, orjson.Fragment):
      score_json = [
          predict_response.float32_json(np.float32(s)) for s in scores
      ]
    results.append([list(pair) for pair in zip(labels, score_json)])
  if not results:
    raise status.invalid_argument(
        "Cannot convert empty ClassificationResults to JSON"
    )
  return orjson.dumps({"results": results}, option=orjson.OPT_SERIALIZE_NUMPY)


def format_regress_response(values: Any) -> bytes:
  """{"results": [v1, v2, ...]} from a RegressionResult proto or floats."""
  regressions = getattr(values, "regressions", None)
  if regressions is not None:
    values = [r.value for r in regressions]
  values = np.asarray(values, dtype=np.float32).ravel()
  if values.size == 0:
    raise status.invalid_argument(
        "Cannot convert empty RegressionResults to JSON"
    )
  return orjson.dumps(
      {"results": predict_response.float32_json(values)},
      option=orjson.OPT_SERIALIZE_NUMPY,
  )
