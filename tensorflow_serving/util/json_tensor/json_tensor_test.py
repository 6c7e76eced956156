"""Tests for json_tensor: REST JSON <-> numpy, with upstream's messages."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import example_request
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import predict_response
from tensorflow_serving.util.json_tensor import targets

# tensorflow/core/framework/types.proto values.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT8 = 1, 2, 3, 4, 6
DT_STRING, DT_COMPLEX64, DT_INT64, DT_BOOL, DT_UINT64 = 7, 8, 9, 10, 23


@dataclasses.dataclass
class Spec:
  dtype: Any
  shape: list[int] | None = None


def parse(body: str | bytes, specs: dict[str, Any], **kwargs):
  doc = document.decode_json_body(body)
  return predict_request.parse_predict_inputs(doc, specs, **kwargs)


class ErrorAssertions(parameterized.TestCase):

  def assert_error(
      self,
      fn,
      message: str,
      code: status.Code = status.Code.INVALID_ARGUMENT,
      exact: bool = True,
  ):
    with self.assertRaises(status.ServingError) as cm:
      fn()
    self.assertEqual(cm.exception.code, code, cm.exception.message)
    if exact:
      self.assertEqual(cm.exception.message, message)
    else:
      self.assertIn(message, cm.exception.message)
    return cm.exception


class DecodeBodyTest(ErrorAssertions):

  def test_empty(self):
    self.assert_error(
        lambda: document.decode_json_body(b""),
        "JSON Parse error: The document is empty",
    )

  def test_whitespace_only(self):
    self.assert_error(
        lambda: document.decode_json_body(b"  \n"),
        "JSON Parse error: The document is empty. at offset: 3",
    )

  def test_large_blank_body_is_refused_as_rapidjson_words_it(self):
    # Past BLANK_CHECK_MIN_BYTES numpy answers, in the parsers' words.
    size = document.BLANK_CHECK_MIN_BYTES + 3
    for body in (b" " * size, bytearray(b"\r\n\t ") * (size // 4)):
      for decode in (
          document.decode_json_body,
          lambda b: predict_request.decode_predict(b, self.fail),
      ):
        self.assert_error(
            lambda decode=decode, body=body: decode(body),
            f"JSON Parse error: The document is empty. at offset: {len(body)}",
        )

  def test_large_body_with_a_value_after_blanks_parses(self):
    body = bytearray(b" ") * document.BLANK_CHECK_MIN_BYTES
    body += b'{"instances": [1.0]}'
    self.assertEqual(document.decode_json_body(body), {"instances": [1.0]})
    # A control character among the blanks is the parser's error to word.
    self.assert_error(
        lambda: document.decode_json_body(body.replace(b"{", b"\x01{")),
        f"JSON Parse error: Invalid value. at offset: {len(body) - 20}",
    )

  def test_malformed(self):
    error = self.assert_error(
        lambda: document.decode_json_body(b'{"instances": [1,]}'),
        "JSON Parse error: ",
        exact=False,
    )
    self.assertIn(" at offset: ", error.message)
    # rapidjson's words and offset, as upstream's message has them.
    self.assert_error(
        lambda: document.decode_json_body(b"instances = [1, 2]"),
        "JSON Parse error: Invalid value. at offset: 0",
    )
    self.assert_error(
        lambda: document.decode_json_body(b"[1 2]"),
        "JSON Parse error: Missing a comma or ']' after an array element. at "
        "offset: 3",
    )

  def test_top_level_must_be_object(self):
    self.assert_error(
        lambda: document.decode_json_body(b"[1, 2]"),
        "JSON Value: [\n    1,\n    2\n] Is not object",
    )
    self.assert_error(
        lambda: document.decode_json_body(b'"x"'),
        'JSON Value: "x" Is not object',
    )

  def test_nan_and_infinity_tokens(self):
    doc = document.decode_json_body(
        b'{"inputs": [NaN, Infinity, -Infinity, 1.5]}'
    )
    values = doc["inputs"]
    self.assertTrue(math.isnan(values[0]))
    self.assertEqual(values[1:], [math.inf, -math.inf, 1.5])

  def test_str_body_and_bool_hint(self):
    doc = document.decode_json_body('{"inputs": [1, 2]}')
    self.assertIsInstance(doc, dict)
    self.assertFalse(doc.may_contain_bools)
    self.assertTrue(
        document.decode_json_body(b'{"inputs": [true]}').may_contain_bools
    )

  def test_signature_name(self):
    self.assertEqual(document.get_signature_name({}), "")
    self.assertEqual(
        document.get_signature_name({"signature_name": "serving_default"}),
        "serving_default",
    )
    self.assert_error(
        lambda: document.get_signature_name({"signature_name": 1}),
        'JSON Value: {\n    "signature_name": 1\n} not formatted correctly. '
        "'signature_name' key must be a string value.",
    )


class RowFormatTest(ErrorAssertions):

  def test_single_input_rows_are_stacked(self):
    inputs, fmt = parse(
        '{"instances": [[1, 2.5, 3], [4, 5, 6]]}', {"x": Spec(np.float32)}
    )
    self.assertEqual(fmt, predict_request.ROW)
    self.assertEqual(inputs["x"].dtype, np.float32)
    np.testing.assert_array_equal(inputs["x"], [[1, 2.5, 3], [4, 5, 6]])

  def test_scalar_rows(self):
    inputs, _ = parse('{"instances": [1, 2, 3]}', {"x": Spec(DT_INT64)})
    self.assertEqual(inputs["x"].dtype, np.int64)
    np.testing.assert_array_equal(inputs["x"], [1, 2, 3])

  def test_dtypes_as_enum_numpy_and_tf_like(self):

    class FakeTfDType:
      as_datatype_enum = DT_DOUBLE

    for dtype, expected in [
        (DT_INT32, np.int32),
        (np.int8, np.int8),
        (FakeTfDType(), np.float64),
        (np.dtype(np.uint8), np.uint8),
    ]:
      inputs, _ = parse('{"instances": [1, 2]}', {"x": Spec(dtype)})
      self.assertEqual(inputs["x"].dtype, expected)

  def test_multiple_inputs_as_objects(self):
    inputs, fmt = parse(
        '{"instances": [{"a": 1, "b": [1, 2], "c": "x"},'
        '               {"a": 2, "b": [3, 4], "c": {"b64": "aGk="}}]}',
        {"a": Spec(DT_INT32), "b": Spec(DT_FLOAT), "c": Spec(DT_STRING)},
    )
    self.assertEqual(fmt, predict_request.ROW)
    np.testing.assert_array_equal(inputs["a"], np.array([1, 2], np.int32))
    np.testing.assert_array_equal(inputs["b"], [[1, 2], [3, 4]])
    self.assertEqual(inputs["c"].dtype, object)
    self.assertEqual(inputs["c"].tolist(), [b"x", b"hi"])

  def test_single_input_as_objects(self):
    inputs, _ = parse(
        '{"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}', {"x": Spec(DT_FLOAT)}
    )
    self.assertEqual(inputs["x"].shape, (2, 2))

  def test_strings_and_b64(self):
    inputs, _ = parse(
        '{"instances": ["héllo", {"b64": "AP8="}, {"b64": "aGk"}]}',
        {"x": Spec(DT_STRING)},
    )
    self.assertEqual(
        inputs["x"].tolist(), ["héllo".encode(), b"\x00\xff", b"hi"]
    )

  def test_bools(self):
    inputs, _ = parse(
        '{"instances": [[true, false], [false, true]]}', {"x": Spec(DT_BOOL)}
    )
    self.assertEqual(inputs["x"].dtype, np.bool_)
    np.testing.assert_array_equal(inputs["x"], [[True, False], [False, True]])

  def test_nan_input(self):
    inputs, _ = parse(
        '{"instances": [NaN, Infinity, -Infinity]}', {"x": Spec(DT_FLOAT)}
    )
    self.assertTrue(np.isnan(inputs["x"][0]))
    self.assertEqual(inputs["x"][1:].tolist(), [math.inf, -math.inf])

  def test_empty_rows(self):
    inputs, _ = parse('{"instances": [[], []]}', {"x": Spec(DT_FLOAT)})
    self.assertEqual(inputs["x"].shape, (2, 0))
    self.assertEqual(inputs["x"].dtype, np.float32)
    inputs, _ = parse('{"instances": [[], []]}', {"x": Spec(DT_STRING)})
    self.assertEqual(inputs["x"].shape, (2, 0))

  def test_wide_ints(self):
    inputs, _ = parse(
        '{"instances": [0, 18446744073709551615]}', {"x": Spec(DT_UINT64)}
    )
    self.assertEqual(inputs["x"].tolist(), [0, 18446744073709551615])
    inputs, _ = parse(
        '{"instances": [-9223372036854775808, 9223372036854775807]}',
        {"x": Spec(DT_INT64)},
    )
    self.assertEqual(
        inputs["x"].tolist(), [-9223372036854775808, 9223372036854775807]
    )

  # Errors, each with upstream's message.

  def test_not_a_list(self):
    self.assert_error(
        lambda: parse('{"instances": 1}', {"x": Spec(DT_FLOAT)}),
        "JSON Value: {\n    \"instances\": 1\n} Excepting 'instances' to be "
        "an list/array",
    )

  def test_empty_instances(self):
    self.assert_error(
        lambda: parse('{"instances": []}', {"x": Spec(DT_FLOAT)}),
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' "
        "array",
    )

  def test_both_keys(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [1], "inputs": [1]}', {"x": Spec(DT_FLOAT)}
        ),
        "Not formatted correctly expecting only one of 'inputs' or "
        "'instances' keys to exist ",
        exact=False,
    )

  def test_neither_key(self):
    self.assert_error(
        lambda: parse('{"foo": 1}', {"x": Spec(DT_FLOAT)}),
        "Missing 'inputs' or 'instances' key",
    )

  def test_no_input_specs(self):
    self.assert_error(
        lambda: parse('{"instances": [1]}', {}),
        "Failed to get input map for signature: DEFAULT",
    )
    self.assert_error(
        lambda: parse('{"signature_name": "s", "instances": [1]}', {}),
        "Failed to get input map for signature: s",
    )

  def test_decimal_for_int(self):
    self.assert_error(
        lambda: parse('{"instances": [1, 1.5]}', {"x": Spec(DT_INT32)}),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is not of expected "
        "type: int32",
    )
    self.assert_error(
        lambda: parse('{"instances": [1.0]}', {"x": Spec(DT_INT64)}),
        "JSON Value: 1.0 Type: Number is not of expected type: int64",
        exact=False,
    )

  def test_string_for_float(self):
    self.assert_error(
        lambda: parse('{"instances": [[1, "2"]]}', {"x": Spec(DT_FLOAT)}),
        "Failed to process element: 0 of 'instances' list. Error: "
        'INVALID_ARGUMENT: JSON Value: "2" Type: String is not of expected '
        "type: float",
    )

  def test_null_for_float(self):
    self.assert_error(
        lambda: parse('{"instances": [null]}', {"x": Spec(DT_FLOAT)}),
        "JSON Value: null Type: Null is not of expected type: float",
        exact=False,
    )

  def test_bool_hidden_among_numbers(self):
    for dtype, name in [(DT_FLOAT, "float"), (DT_INT32, "int32")]:
      self.assert_error(
          lambda dtype=dtype: parse(
              '{"instances": [[1, 2], [3, true]]}', {"x": Spec(dtype)}
          ),
          "Failed to process element: 1 of 'instances' list. Error: "
          "INVALID_ARGUMENT: JSON Value: true Type: True is not of expected "
          f"type: {name}",
      )
    # Also when given a plain dict, without decode_json_body's hint.
    self.assert_error(
        lambda: predict_request.parse_predict_inputs(
            {"inputs": [1.5, False]}, {"x": Spec(DT_FLOAT)}
        ),
        "JSON Value: false Type: False is not of expected type: float",
    )

  def test_number_for_bool(self):
    self.assert_error(
        lambda: parse('{"instances": [true, 1]}', {"x": Spec(DT_BOOL)}),
        "JSON Value: 1 Type: Number is not of expected type: bool",
        exact=False,
    )

  def test_number_for_string(self):
    self.assert_error(
        lambda: parse('{"inputs": ["a", 1]}', {"x": Spec(DT_STRING)}),
        "JSON Value: 1 Type: Number is not of expected type: string",
    )

  def test_object_for_number(self):
    self.assert_error(
        lambda: parse('{"inputs": [{"b64": "aGk="}]}', {"x": Spec(DT_FLOAT)}),
        'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of expected '
        "type: float",
    )

  def test_bad_base64(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [{"b64": "!!!"}]}', {"x": Spec(DT_STRING)}
        ),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Unable to base64 decode",
    )
    self.assert_error(
        lambda: parse(
            '{"inputs": [{"b64": "aGk=", "x": 1}]}', {"x": Spec(DT_STRING)}
        ),
        'JSON Value: {\n    "b64": "aGk=",\n    "x": 1\n} not formatted '
        "correctly for base64 data",
    )

  def test_row_size_mismatch(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [[1, 2], [1, 2, 3]]}', {"x": Spec(DT_FLOAT)}
        ),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3",
    )

  def test_row_shape_mismatch(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [[1, 2], [[1], [2]]]}', {"x": Spec(DT_FLOAT)}
        ),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting shape [2] but got: [2,1]",
    )

  def test_ragged_within_row_names_input_and_place(self):
    self.assert_error(
        lambda: parse('{"instances": [[[1, 2], [3]]]}', {"x": Spec(DT_FLOAT)}),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Encountered list at unexpected size: 1 at level: 1 "
        "expected size: 2 (input: x, at: instances[0][1], expected shape: "
        "[2,2])",
    )

  def test_list_too_deep(self):
    self.assert_error(
        lambda: parse('{"inputs": [1, [2]]}', {"x": Spec(DT_FLOAT)}),
        "Encountered list at unexpected level: 1 expected < 1 (input: x, at: "
        "inputs[1], expected shape: [2])",
    )

  def test_value_at_wrong_level(self):
    self.assert_error(
        lambda: parse('{"inputs": [[1], 2]}', {"x": Spec(DT_FLOAT)}),
        "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected "
        "at level: 2 (input: x, at: inputs[1], expected shape: [2,1])",
    )

  def test_plain_list_with_several_inputs(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [1, 2]}', {"a": Spec(DT_FLOAT), "b": Spec(DT_FLOAT)}
        ),
        "instances is a plain list, but expecting list of objects as multiple "
        "input tensors required as per tensorinfo_map",
    )

  def test_object_keys_must_equal_inputs(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [{"a": 1}]}',
            {"a": Spec(DT_FLOAT), "b": Spec(DT_FLOAT)},
        ),
        "Failed to process element: 0 of 'instances' list. JSON object: "
        '{\n    "a": 1\n} keys must be equal to: a,b',
    )

  def test_unknown_key_in_object(self):
    self.assert_error(
        lambda: parse('{"instances": [{"a": 1, "z": 2}]}', {"a": Spec(1)}),
        "Failed to process element: 0 key: z of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: z",
    )

  def test_mixed_objects_and_lists(self):
    self.assert_error(
        lambda: parse('{"instances": [{"a": 1}, [1]]}', {"a": Spec(1)}),
        "Expecting object but got list at item 1 of input list",
    )
    self.assert_error(
        lambda: parse('{"instances": [[1], {"a": [1]}]}', {"a": Spec(1)}),
        "Expecting value/list but got object at item 1 of input list",
    )

  def test_multi_input_row_size_mismatch(self):
    self.assert_error(
        lambda: parse(
            '{"instances": [{"a": [1]}, {"a": [1, 2]}]}', {"a": Spec(1)}
        ),
        "Failed to process element: 1 key: a of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 1 but got: 2",
    )


class NumericRangeTest(ErrorAssertions):

  @parameterized.parameters(
      (DT_INT8, "300", "int8"),
      (DT_INT8, "-129", "int8"),
      (DT_UINT8, "-1", "uint8"),
      (DT_INT32, "2147483648", "int32"),
      (DT_INT64, "9223372036854775808", "int64"),
      (DT_UINT64, "-1", "uint64"),
      (DT_INT32, "NaN", "int32"),
  )
  def test_out_of_range_ints(self, dtype, literal, name):
    self.assert_error(
        lambda: parse(f'{{"inputs": [1, {literal}]}}', {"x": Spec(dtype)}),
        f"JSON Value: {literal} Type: Number is not of expected type: {name}",
    )

  def test_lossy_integers(self):
    inputs, _ = parse('{"inputs": [16777215, -16777215]}', {"x": Spec(1)})
    self.assertEqual(inputs["x"].tolist(), [16777215, -16777215])
    self.assert_error(
        lambda: parse('{"inputs": [1, 16777217]}', {"x": Spec(DT_FLOAT)}),
        "Cannot convert JSON value: 16777217 to float without loss of "
        "precision.",
    )
    self.assert_error(
        lambda: parse('{"inputs": [9007199254740993]}', {"x": Spec(2)}),
        "Cannot convert JSON value: 9007199254740993 to double without loss "
        "of precision.",
    )

  def test_lossy_decimals(self):
    self.assert_error(
        lambda: parse('{"inputs": [1.5, 1e39]}', {"x": Spec(DT_FLOAT)}),
        "Cannot convert JSON value: 1e+39 to float without loss of precision.",
    )
    # NaN does not hide an out-of-range neighbour.
    self.assert_error(
        lambda: parse('{"inputs": [NaN, 1e39]}', {"x": Spec(DT_FLOAT)}),
        "without loss of precision",
        exact=False,
    )
    inputs, _ = parse('{"inputs": [1e39]}', {"x": Spec(DT_DOUBLE)})
    self.assertEqual(inputs["x"].tolist(), [1e39])

  def test_unsupported_dtype_unimplemented(self):
    self.assert_error(
        lambda: parse('{"inputs": [1]}', {"x": Spec(DT_COMPLEX64)}),
        "Conversion of JSON Value: 1 to type: complex64",
        status.Code.UNIMPLEMENTED,
    )

  def test_half_and_bfloat16_extensions(self):
    inputs, _ = parse('{"inputs": [1.5, 2]}', {"x": Spec(19)})
    self.assertEqual(inputs["x"].dtype, np.float16)
    inputs, _ = parse('{"inputs": [1.5, 2]}', {"x": Spec(14)})
    self.assertEqual(inputs["x"].dtype.name, "bfloat16")
    self.assert_error(
        lambda: parse('{"inputs": [70000.5]}', {"x": Spec(19)}),
        "Cannot convert JSON value: 70000.5 to half without "
        "loss of precision.",
    )


class ColumnarFormatTest(ErrorAssertions):

  def test_single_input_list(self):
    inputs, fmt = parse('{"inputs": [[1, 2], [3, 4]]}', {"x": Spec(1)})
    self.assertEqual(fmt, predict_request.COLUMNAR)
    np.testing.assert_array_equal(inputs["x"], [[1, 2], [3, 4]])

  def test_single_input_scalar(self):
    inputs, _ = parse('{"inputs": 5}', {"x": Spec(DT_INT32)})
    self.assertEqual(inputs["x"].shape, ())
    self.assertEqual(inputs["x"], 5)
    inputs, _ = parse('{"inputs": {"b64": "aGk="}}', {"x": Spec(DT_STRING)})
    self.assertEqual(inputs["x"].shape, ())
    self.assertEqual(inputs["x"].item(), b"hi")

  def test_single_input_named(self):
    inputs, _ = parse('{"inputs": {"x": [1, 2], "ignored": 1}}', {"x": Spec(1)})
    np.testing.assert_array_equal(inputs["x"], [1, 2])

  def test_multiple_inputs_own_batch_sizes(self):
    inputs, _ = parse(
        '{"inputs": {"a": [1, 2, 3], "b": [["x"]]}}',
        {"a": Spec(DT_INT64), "b": Spec(DT_STRING)},
    )
    self.assertEqual(inputs["a"].shape, (3,))
    self.assertEqual(inputs["b"].shape, (1, 1))

  def test_missing_named_input(self):
    self.assert_error(
        lambda: parse('{"inputs": {"a": [1]}}', {"a": Spec(1), "b": Spec(1)}),
        "Missing named input: b in 'inputs' object.",
    )

  def test_plain_value_with_several_inputs(self):
    self.assert_error(
        lambda: parse('{"inputs": [1]}', {"a": Spec(1), "b": Spec(1)}),
        "inputs is a plain value/list, but expecting an object as multiple "
        "input tensors required as per tensorinfo_map",
    )

  def test_ragged_columnar_names_input(self):
    self.assert_error(
        lambda: parse(
            '{"inputs": {"a": [[1, 2], [3]], "b": 1}}',
            {"a": Spec(1), "b": Spec(1)},
        ),
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2 "
        '(input: a, at: inputs["a"][1], expected shape: [2,2])',
    )

  def test_too_many_dimensions(self):
    deep = "[" * 70 + "1" + "]" * 70
    self.assert_error(
        lambda: parse(f'{{"inputs": {deep}}}', {"x": Spec(DT_FLOAT)}),
        "Input: x has 70 dimensions; at most 64 are supported",
    )
    rows = "[" * 65 + "1" + "]" * 65  # Rows of 64 dimensions.
    self.assert_error(
        lambda: parse(f'{{"instances": {rows}}}', {"x": Spec(DT_FLOAT)}),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Rows have 64 dimensions; at most 63 are supported, "
        "as the batch adds one",
    )
    # Nesting beyond the parser's limit is a parse error, not a crash.
    deeper = "[" * 2000 + "]" * 2000
    self.assert_error(
        lambda: parse(f'{{"inputs": {deeper}}}', {"x": Spec(DT_FLOAT)}),
        "JSON Parse error: ",
        exact=False,
    )

  def test_shapes_are_not_checked_against_the_spec(self):
    # As upstream: the model's ops decide which shapes they take.
    inputs, _ = parse('{"inputs": [[1, 2, 3]]}', {"x": Spec(DT_FLOAT, [-1, 2])})
    self.assertEqual(inputs["x"].shape, (1, 3))

  def test_huge_numbers_are_parse_errors(self):
    # 10**400 is no double: rapidjson's "Number too big", a 400, never a 500.
    for literal in ("1" + "0" * 400, "-1" + "0" * 400, "1e400"):
      self.assert_error(
          lambda literal=literal: parse(
              f'{{"instances": [{literal}]}}', {"x": Spec(DT_FLOAT)}
          ),
          "JSON Parse error: Number too big to be stored in double. at "
          "offset: ",
          exact=False,
      )

  def test_decode_predict_asks_lookup_for_the_named_signature(self):
    seen = []

    class Sig:
      inputs = {"x": Spec(DT_FLOAT)}

    def lookup(signature_name):
      seen.append(signature_name)
      return Sig()

    for body, fast in (
        (b'{"signature_name": "sig", "instances": [[1.0]]}', True),
        (b'{"signature_name": "sig", "instances": [{"x": [1.0]}]}', False),
    ):
      with self.subTest(fast=fast):
        seen.clear()
        decoded = predict_request.decode_predict(body, lookup)
        self.assertEqual(seen, ["sig"])
        self.assertIsInstance(decoded.sig, Sig)
        self.assertEqual(decoded.request_format, predict_request.ROW)
        self.assertEqual(decoded.inputs["x"].shape, (1, 1))

  def test_decode_predict_parse_errors_come_before_lookup(self):
    def lookup(name):
      raise AssertionError("looked up a signature for a broken body")

    self.assert_error(
        lambda: predict_request.decode_predict(b'{"instances": [1,', lookup),
        "JSON Parse error: ",
        exact=False,
    )

  def test_large_instance_fast_path_matches_exact(self):
    values = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    body = json.dumps({"instances": values.tolist()})
    inputs, _ = parse(body, {"x": Spec(DT_FLOAT)})
    np.testing.assert_array_equal(inputs["x"], values)
    flat, shape = predict_request._exact_values(
        values.tolist(), targets.target_for_spec(Spec(DT_FLOAT)), "x", ""
    )
    np.testing.assert_array_equal(
        np.array(flat, np.float32).reshape(shape), values
    )


class FormatResponseTest(ErrorAssertions):

  def test_row_single_output(self):
    body = predict_response.format_predict_response(
        {"y": np.array([[0.5, 2.5], [1.0, 0.1]], np.float32)},
        predict_request.ROW,
    )
    self.assertEqual(body, b'{"predictions":[[0.5,2.5],[1.0,0.1]]}')

  def test_row_multiple_outputs(self):
    body = predict_response.format_predict_response(
        {
            "scores": np.array([[0.5], [0.25]], np.float32),
            "classes": np.array([3, 4], np.int64),
            "name": np.array([b"a", b"b"], dtype=object),
        },
        predict_request.ROW,
    )
    self.assertEqual(
        json.loads(body),
        {
            "predictions": [
                {"classes": 3, "name": "a", "scores": [0.5]},
                {"classes": 4, "name": "b", "scores": [0.25]},
            ]
        },
    )

  def test_row_inconsistent_batch(self):
    self.assert_error(
        lambda: predict_response.format_predict_response(
            {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, predict_request.ROW
        ),
        "Tensor name: b has inconsistent batch size: 3 expecting: 2",
    )

  def test_row_scalar_output(self):
    self.assert_error(
        lambda: predict_response.format_predict_response(
            {"a": np.float32(1)}, predict_request.ROW
        ),
        "Tensor name: a has no shape information ",
    )

  def test_columnar(self):
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": np.array([1, 2], np.int32)}, predict_request.COLUMNAR
        ),
        b'{"outputs":[1,2]}',
    )
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": np.float32(2.5)}, predict_request.COLUMNAR
        ),
        b'{"outputs":2.5}',
    )
    self.assertEqual(
        predict_response.format_predict_response(
            {"b": np.array([True, False]), "a": np.array([[1]], np.uint64)},
            predict_request.COLUMNAR,
        ),
        b'{"outputs":{"a":[[1]],"b":[true,false]}}',
    )

  def test_float32_shortest_repr(self):
    body = predict_response.format_predict_response(
        {"y": np.array([0.1, 1 / 3, 1e-7, 3e38, 16777216], np.float32)},
        predict_request.COLUMNAR,
    )
    values = json.loads(body)["outputs"]
    self.assertEqual(
        np.array(values, np.float32).tolist(),
        np.array([0.1, 1 / 3, 1e-7, 3e38, 16777216], np.float32).tolist(),
    )
    self.assertIn(b"0.1,", body)  # Not 0.10000000149011612.

  def test_nan_and_infinity_out(self):
    out = {"y": np.array([[np.nan, 1.5], [np.inf, -np.inf]], np.float32)}
    body = predict_response.format_predict_response(out, predict_request.ROW)
    self.assertEqual(body, b'{"predictions":[[NaN,1.5],[Infinity,-Infinity]]}')
    # They parse back through decode_json_body.
    values = document.decode_json_body(body)["predictions"]
    self.assertTrue(math.isnan(values[0][0]))
    self.assertEqual(values[1], [math.inf, -math.inf])
    body = predict_response.format_predict_response(
        {"y": out["y"], "z": np.array([1, 2])}, predict_request.ROW
    )
    self.assertEqual(
        body,
        b'{"predictions":[{"y":[NaN,1.5],"z":1},'
        b'{"y":[Infinity,-Infinity],"z":2}]}',
    )
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": np.float64(-np.inf)}, predict_request.COLUMNAR
        ),
        b'{"outputs":-Infinity}',
    )
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": np.array([np.nan, 2], np.float16)}, predict_request.COLUMNAR
        ),
        b'{"outputs":[NaN,2.0]}',
    )

  def test_bytes_outputs_are_base64(self):
    out = {
        "image_bytes": np.array([b"\x00\xff", b"hi"], dtype=object),
        "text": np.array([["héllo".encode()]], dtype=object),
    }
    self.assertEqual(
        json.loads(
            predict_response.format_predict_response(
                out, predict_request.COLUMNAR
            )
        ),
        {
            "outputs": {
                "image_bytes": [{"b64": "AP8="}, {"b64": "aGk="}],
                "text": [["héllo"]],
            }
        },
    )

  def test_numpy_unicode_outputs(self):
    self.assertEqual(
        predict_response.format_predict_response(
            {"a_bytes": np.array(["hé"]), "b": np.array([["x", "y"]])},
            predict_request.COLUMNAR,
        ),
        b'{"outputs":{"a_bytes":[{"b64":"aMOp"}],"b":[["x","y"]]}}',
    )

  def test_invalid_utf8_falls_back_to_base64(self):
    body = predict_response.format_predict_response(
        {"text": np.array([b"ok", b"\xff"], dtype=object)},
        predict_request.COLUMNAR,
    )
    self.assertEqual(json.loads(body), {"outputs": ["ok", {"b64": "/w=="}]})

  def test_non_contiguous_bfloat16_and_big_endian(self):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3).T
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": arr}, predict_request.COLUMNAR
        ),
        b'{"outputs":[[0.0,3.0],[1.0,4.0],[2.0,5.0]]}',
    )
    bf16 = np.array([1.5], dtype=targets.BFLOAT16)
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": bf16}, predict_request.COLUMNAR
        ),
        b'{"outputs":[1.5]}',
    )
    self.assertEqual(
        predict_response.format_predict_response(
            {"y": np.array([1, 2], ">i4")}, predict_request.COLUMNAR
        ),
        b'{"outputs":[1,2]}',
    )

  def test_unsupported_output(self):
    self.assert_error(
        lambda: predict_response.format_predict_response(
            {"y": np.array([1j], np.complex64)}, predict_request.COLUMNAR
        ),
        "Failed to write JSON value for tensor type: complex64",
    )

  def test_empty_and_bad_format(self):
    self.assert_error(
        lambda: predict_response.format_predict_response(
            {}, predict_request.ROW
        ),
        "Cannot convert empty tensor map to JSON",
    )
    self.assert_error(
        lambda: predict_response.format_predict_response(
            {"y": np.zeros(1)}, "x"
        ),
        "Invalid request format",
    )

  def test_format_error(self):
    body = predict_response.format_error(
        'Servable not found for request: "x"\n'
    )
    self.assertEqual(
        body, b'{ "error": "Servable not found for request: \\"x\\"\\n" }'
    )
    self.assertEqual(
        json.loads(body)["error"], 'Servable not found for request: "x"\n'
    )
    self.assertEqual(
        json.loads(predict_response.format_error("\ud800"))["error"], "\ud800"
    )


class ClassifyRegressTest(ErrorAssertions):

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


class SimplePredictTest(parameterized.TestCase):
  """The simdjson fast path gives exactly what the general path gives."""

  @parameterized.parameters(
      ('{"instances": [[0.0, 0.5, 1.0], [0.25, 3, -7.5]]}', DT_FLOAT),
      ('{"signature_name": "s[0]", "instances": [[1e-7, 2.5e6]]}', DT_DOUBLE),
      ('{"instances": [0.1, 0.2, 0.3]}', DT_FLOAT),
      ('{"inputs": [[1, 2], [3, 4]]}', DT_FLOAT),
      ('{"signature_name": "", "inputs": [0.3333333333333333]}', DT_DOUBLE),
      ('{"instances": [[16777215, -16777215]]}', DT_FLOAT),
  )
  def test_same_tensor_as_the_general_path(self, body, dtype):
    simple = predict_request.parse_simple_predict(body.encode())
    self.assertIsNotNone(simple)
    doc = json.loads(body)
    self.assertEqual(simple.signature_name, doc.get("signature_name", ""))
    specs = {"x": Spec(dtype)}
    fast = predict_request.simple_predict_inputs(simple, specs)
    general, request_format = parse(body, specs)
    self.assertEqual(simple.request_format, request_format)
    self.assertEqual(fast["x"].dtype, general["x"].dtype)
    self.assertEqual(fast["x"].shape, general["x"].shape)
    np.testing.assert_array_equal(fast["x"], general["x"])

  @parameterized.parameters(
      '{"instances": [[1.0, true]]}',  # a bool must fail as in the general path
      '{"instances": [[1.0, "2"]]}',
      '{"instances": [[1.0, null]]}',
      '{"instances": [[1.0], [2.0, 3.0]]}',  # ragged
      '{"instances": [[1.0, 2.0], [[3.0], 4.0]]}',  # deeper somewhere
      '{"instances": [[[1.0, 2.0]]]}',  # 3 dimensions
      '{"instances": [[1.0, [2.0]], [3.0, 4.0]]}',
      '{"instances": [{"x": [1.0]}]}',  # objects per row
      '{"instances": []}',
      '{"instances": [[]]}',
      '{"instances": 1.0}',
      '{"instances": [NaN]}',
      '{"instances": [[16777217]]}',  # not exact in float32
      '{"instances": [1.0], "inputs": [1.0]}',
      '{"instances": [1.0], "instances": [2.0]}',  # duplicate keys
      '{"signature_name": 3, "instances": [1.0]}',
      '{"instances": [1.0], "extra": 1}',
      "[1.0]",
      "not json",
  )
  def test_anything_else_takes_the_general_path(self, body):
    self.assertIsNone(predict_request.parse_simple_predict(body.encode()))
    # The parser stays usable after every refusal.
    self.assertIsNotNone(
        predict_request.parse_simple_predict(b'{"instances": [1.0]}')
    )

  def test_only_one_input_float_signatures(self):
    simple = predict_request.parse_simple_predict(b'{"instances": [[1, 2]]}')
    self.assertIsNone(
        predict_request.simple_predict_inputs(simple, {"x": Spec(DT_INT64)})
    )
    self.assertIsNone(
        predict_request.simple_predict_inputs(
            simple, {"x": Spec(DT_FLOAT), "y": Spec(DT_FLOAT)}
        )
    )


if __name__ == "__main__":
  absltest.main()
