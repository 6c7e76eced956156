"""Tests for example_request: Classify and Regress bodies and results."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import example_request
from tensorflow_serving.util.json_tensor.test_util import json_cases


class ClassifyRegressTest(json_cases.ErrorAssertions):

  def test_parse_examples(self):
    doc = document.decode_json_body(b"""{
        "signature_name": "classify",
        "context": {"lang": "en"},
        "examples": [
          {"i": 1, "f": 1.5, "b": true, "s": "hi", "raw": {"b64": "AP8="},
           "il": [1, 2], "fl": [1.5, 2.5], "empty": []},
          {"i": [-3, false]}
        ]}""")
    request = example_request.parse_example_request(doc)
    self.assertEqual(request.signature_name, "classify")
    context = example_pb2.Example.FromString(request.context)
    self.assertEqual(context.features.feature["lang"].bytes_list.value, [b"en"])
    first = example_pb2.Example.FromString(request.examples[0]).features.feature
    self.assertEqual(first["i"].int64_list.value, [1])
    self.assertEqual(first["f"].float_list.value, [1.5])
    self.assertEqual(first["b"].int64_list.value, [1])
    self.assertEqual(first["s"].bytes_list.value, [b"hi"])
    self.assertEqual(first["raw"].bytes_list.value, [b"\x00\xff"])
    self.assertEqual(first["il"].int64_list.value, [1, 2])
    self.assertEqual(first["fl"].float_list.value, [1.5, 2.5])
    self.assertIsNone(first["empty"].WhichOneof("kind"))
    second = example_pb2.Example.FromString(
        request.examples[1]
    ).features.feature
    self.assertEqual(second["i"].int64_list.value, [-3, 0])

  @parameterized.parameters(
      (
          '{"examples": [{"f": null}]}',
          "Feature: f has element with unexpected JSON type: Null",
      ),
      (
          '{"examples": [{"f": [[1]]}]}',
          "Feature: f has element with unexpected JSON type: Array",
      ),
      (
          '{"examples": [{"f": {"x": 1}}]}',
          "Feature: f has element with unexpected JSON type: Object",
      ),
      (
          '{"examples": [{"f": [1, "a"]}]}',
          "Unexpected element type in feature: f expecting type: int64",
      ),
      (
          '{"examples": [{"f": [1.5, 2]}]}',
          "Unexpected element type in feature: f expecting type: float",
      ),
      (
          '{"examples": [{"f": ["a", true]}]}',
          "Unexpected element type in feature: f expecting type: bytes",
      ),
      (
          '{"examples": [{"f": 18446744073709551615}]}',
          "Feature: f has uint64 element. Only int64 is supported.",
      ),
      (
          '{"examples": [{"f": 1e39}]}',
          "Cannot convert JSON value: 1e+39 to float without loss of "
          "precision.",
      ),
      ('{"examples": [{"f": {"b64": "!"}}]}', "Unable to base64 decode"),
      ('{"examples": [[1]]}', "Example must be JSON object but got JSON Array"),
      (
          '{"context": 1, "examples": [{}]}',
          "Example must be JSON object but got JSON Number",
      ),
  )
  def test_example_errors(self, body, message):
    self.assert_error(
        lambda: example_request.parse_example_request(
            document.decode_json_body(body)
        ),
        message,
    )

  def test_examples_key_errors(self):
    self.assert_error(
        lambda: example_request.parse_example_request({"foo": 1}),
        'JSON Value: {\n    "foo": 1\n} When method is classify, key '
        "'examples' is expected and was not found",
    )
    self.assert_error(
        lambda: example_request.parse_example_request({"examples": 1}),
        "Expecting 'examples' value to be an list/array",
        exact=False,
    )
    self.assert_error(
        lambda: example_request.parse_example_request({"examples": []}),
        "'examples' value is an empty array",
        exact=False,
    )

  def test_big_ints_are_floats_like_rapidjson(self):
    request = example_request.parse_example_request(
        document.decode_json_body(
            '{"examples": [{"f": 100000000000000000000}]}'
        )
    )
    feature = example_pb2.Example.FromString(
        request.examples[0]
    ).features.feature["f"]
    self.assertEqual(feature.WhichOneof("kind"), "float_list")

  def test_format_classify(self):
    self.assertEqual(
        example_request.format_classify_response(
            [[("a", 0.1), ("b", 3.0)], [("c", float("nan"))]]
        ),
        b'{"results":[[["a",0.1],["b",3.0]],[["c",NaN]]]}',
    )
    result = classification_pb2.ClassificationResult()
    result.classifications.add().classes.add(label="", score=3.0)
    self.assertEqual(
        example_request.format_classify_response(result),
        b'{"results":[[["",3.0]]]}',
    )
    self.assert_error(
        lambda: example_request.format_classify_response([]),
        "Cannot convert empty ClassificationResults to JSON",
    )

  def test_format_regress(self):
    self.assertEqual(
        example_request.format_regress_response([0.1, 2.5]),
        b'{"results":[0.1,2.5]}',
    )
    result = regression_pb2.RegressionResult()
    result.regressions.add(value=0.1)
    result.regressions.add(value=float("inf"))
    self.assertEqual(
        example_request.format_regress_response(result),
        b'{"results":[0.1,Infinity]}',
    )
    self.assert_error(
        lambda: example_request.format_regress_response([]),
        "Cannot convert empty RegressionResults to JSON",
    )


if __name__ == "__main__":
  absltest.main()
