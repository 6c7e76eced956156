"""Tests for predict_request: a Predict body's rows or columns to numpy."""

from __future__ import annotations

import json
import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import targets
from tensorflow_serving.util.json_tensor.test_util import json_cases


class RowFormatTest(json_cases.ErrorAssertions):

  def test_single_input_rows_are_stacked(self):
    inputs, fmt = json_cases.parse(
        '{"instances": [[1, 2.5, 3], [4, 5, 6]]}',
        {"x": json_cases.Spec(np.float32)},
    )
    self.assertEqual(fmt, predict_request.ROW)
    self.assertEqual(inputs["x"].dtype, np.float32)
    np.testing.assert_array_equal(inputs["x"], [[1, 2.5, 3], [4, 5, 6]])

  def test_scalar_rows(self):
    inputs, _ = json_cases.parse(
        '{"instances": [1, 2, 3]}', {"x": json_cases.Spec(json_cases.DT_INT64)}
    )
    self.assertEqual(inputs["x"].dtype, np.int64)
    np.testing.assert_array_equal(inputs["x"], [1, 2, 3])

  def test_dtypes_as_enum_numpy_and_tf_like(self):

    class FakeTfDType:
      as_datatype_enum = json_cases.DT_DOUBLE

    for dtype, expected in [
        (json_cases.DT_INT32, np.int32),
        (np.int8, np.int8),
        (FakeTfDType(), np.float64),
        (np.dtype(np.uint8), np.uint8),
    ]:
      inputs, _ = json_cases.parse(
          '{"instances": [1, 2]}', {"x": json_cases.Spec(dtype)}
      )
      self.assertEqual(inputs["x"].dtype, expected)

  def test_multiple_inputs_as_objects(self):
    inputs, fmt = json_cases.parse(
        '{"instances": [{"a": 1, "b": [1, 2], "c": "x"},'
        '               {"a": 2, "b": [3, 4], "c": {"b64": "aGk="}}]}',
        {
            "a": json_cases.Spec(json_cases.DT_INT32),
            "b": json_cases.Spec(json_cases.DT_FLOAT),
            "c": json_cases.Spec(json_cases.DT_STRING),
        },
    )
    self.assertEqual(fmt, predict_request.ROW)
    np.testing.assert_array_equal(inputs["a"], np.array([1, 2], np.int32))
    np.testing.assert_array_equal(inputs["b"], [[1, 2], [3, 4]])
    self.assertEqual(inputs["c"].dtype, object)
    self.assertEqual(inputs["c"].tolist(), [b"x", b"hi"])

  def test_single_input_as_objects(self):
    inputs, _ = json_cases.parse(
        '{"instances": [{"x": [1, 2]}, {"x": [3, 4]}]}',
        {"x": json_cases.Spec(json_cases.DT_FLOAT)},
    )
    self.assertEqual(inputs["x"].shape, (2, 2))

  def test_strings_and_b64(self):
    inputs, _ = json_cases.parse(
        '{"instances": ["héllo", {"b64": "AP8="}, {"b64": "aGk"}]}',
        {"x": json_cases.Spec(json_cases.DT_STRING)},
    )
    self.assertEqual(
        inputs["x"].tolist(), ["héllo".encode(), b"\x00\xff", b"hi"]
    )

  def test_bools(self):
    inputs, _ = json_cases.parse(
        '{"instances": [[true, false], [false, true]]}',
        {"x": json_cases.Spec(json_cases.DT_BOOL)},
    )
    self.assertEqual(inputs["x"].dtype, np.bool_)
    np.testing.assert_array_equal(inputs["x"], [[True, False], [False, True]])

  def test_nan_input(self):
    inputs, _ = json_cases.parse(
        '{"instances": [NaN, Infinity, -Infinity]}',
        {"x": json_cases.Spec(json_cases.DT_FLOAT)},
    )
    self.assertTrue(np.isnan(inputs["x"][0]))
    self.assertEqual(inputs["x"][1:].tolist(), [math.inf, -math.inf])

  def test_empty_rows(self):
    inputs, _ = json_cases.parse(
        '{"instances": [[], []]}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
    )
    self.assertEqual(inputs["x"].shape, (2, 0))
    self.assertEqual(inputs["x"].dtype, np.float32)
    inputs, _ = json_cases.parse(
        '{"instances": [[], []]}', {"x": json_cases.Spec(json_cases.DT_STRING)}
    )
    self.assertEqual(inputs["x"].shape, (2, 0))

  def test_wide_ints(self):
    inputs, _ = json_cases.parse(
        '{"instances": [0, 18446744073709551615]}',
        {"x": json_cases.Spec(json_cases.DT_UINT64)},
    )
    self.assertEqual(inputs["x"].tolist(), [0, 18446744073709551615])
    inputs, _ = json_cases.parse(
        '{"instances": [-9223372036854775808, 9223372036854775807]}',
        {"x": json_cases.Spec(json_cases.DT_INT64)},
    )
    self.assertEqual(
        inputs["x"].tolist(), [-9223372036854775808, 9223372036854775807]
    )

  # Errors, each with upstream's message.

  def test_not_a_list(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": 1}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "JSON Value: {\n    \"instances\": 1\n} Excepting 'instances' to be "
        "an list/array",
    )

  def test_empty_instances(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": []}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "JSON Value: {\n    \"instances\": []\n} No values in 'instances' "
        "array",
    )

  def test_both_keys(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [1], "inputs": [1]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Not formatted correctly expecting only one of 'inputs' or "
        "'instances' keys to exist ",
        exact=False,
    )

  def test_neither_key(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"foo": 1}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "Missing 'inputs' or 'instances' key",
    )

  def test_no_input_specs(self):
    self.assert_error(
        lambda: json_cases.parse('{"instances": [1]}', {}),
        "Failed to get input map for signature: DEFAULT",
    )
    self.assert_error(
        lambda: json_cases.parse(
            '{"signature_name": "s", "instances": [1]}', {}
        ),
        "Failed to get input map for signature: s",
    )

  def test_decimal_for_int(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [1, 1.5]}',
            {"x": json_cases.Spec(json_cases.DT_INT32)},
        ),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is not of expected "
        "type: int32",
    )
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [1.0]}', {"x": json_cases.Spec(json_cases.DT_INT64)}
        ),
        "JSON Value: 1.0 Type: Number is not of expected type: int64",
        exact=False,
    )

  def test_string_for_float(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [[1, "2"]]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Failed to process element: 0 of 'instances' list. Error: "
        'INVALID_ARGUMENT: JSON Value: "2" Type: String is not of expected '
        "type: float",
    )

  def test_null_for_float(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [null]}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "JSON Value: null Type: Null is not of expected type: float",
        exact=False,
    )

  def test_bool_hidden_among_numbers(self):
    for dtype, name in [
        (json_cases.DT_FLOAT, "float"),
        (json_cases.DT_INT32, "int32"),
    ]:
      self.assert_error(
          lambda dtype=dtype: json_cases.parse(
              '{"instances": [[1, 2], [3, true]]}',
              {"x": json_cases.Spec(dtype)},
          ),
          "Failed to process element: 1 of 'instances' list. Error: "
          "INVALID_ARGUMENT: JSON Value: true Type: True is not of expected "
          f"type: {name}",
      )
    # Also when given a plain dict, without decode_json_body's hint.
    self.assert_error(
        lambda: predict_request.parse_predict_inputs(
            {"inputs": [1.5, False]},
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "JSON Value: false Type: False is not of expected type: float",
    )

  def test_number_for_bool(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [true, 1]}',
            {"x": json_cases.Spec(json_cases.DT_BOOL)},
        ),
        "JSON Value: 1 Type: Number is not of expected type: bool",
        exact=False,
    )

  def test_number_for_string(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": ["a", 1]}', {"x": json_cases.Spec(json_cases.DT_STRING)}
        ),
        "JSON Value: 1 Type: Number is not of expected type: string",
    )

  def test_object_for_number(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [{"b64": "aGk="}]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        'JSON Value: {\n    "b64": "aGk="\n} Type: Object is not of expected '
        "type: float",
    )

  def test_bad_base64(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [{"b64": "!!!"}]}',
            {"x": json_cases.Spec(json_cases.DT_STRING)},
        ),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Unable to base64 decode",
    )
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [{"b64": "aGk=", "x": 1}]}',
            {"x": json_cases.Spec(json_cases.DT_STRING)},
        ),
        'JSON Value: {\n    "b64": "aGk=",\n    "x": 1\n} not formatted '
        "correctly for base64 data",
    )

  def test_row_size_mismatch(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [[1, 2], [1, 2, 3]]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 2 but got: 3",
    )

  def test_row_shape_mismatch(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [[1, 2], [[1], [2]]]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting shape [2] but got: [2,1]",
    )

  def test_ragged_within_row_names_input_and_place(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [[[1, 2], [3]]]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Encountered list at unexpected size: 1 at level: 1 "
        "expected size: 2 (input: x, at: instances[0][1], expected shape: "
        "[2,2])",
    )

  def test_list_too_deep(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [1, [2]]}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "Encountered list at unexpected level: 1 expected < 1 (input: x, at: "
        "inputs[1], expected shape: [2])",
    )

  def test_value_at_wrong_level(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [[1], 2]}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "JSON Value: 2 found at incorrect level: 2 in the JSON DOM. Expected "
        "at level: 2 (input: x, at: inputs[1], expected shape: [2,1])",
    )

  def test_plain_list_with_several_inputs(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [1, 2]}',
            {
                "a": json_cases.Spec(json_cases.DT_FLOAT),
                "b": json_cases.Spec(json_cases.DT_FLOAT),
            },
        ),
        "instances is a plain list, but expecting list of objects as multiple "
        "input tensors required as per tensorinfo_map",
    )

  def test_object_keys_must_equal_inputs(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [{"a": 1}]}',
            {
                "a": json_cases.Spec(json_cases.DT_FLOAT),
                "b": json_cases.Spec(json_cases.DT_FLOAT),
            },
        ),
        "Failed to process element: 0 of 'instances' list. JSON object: "
        '{\n    "a": 1\n} keys must be equal to: a,b',
    )

  def test_unknown_key_in_object(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [{"a": 1, "z": 2}]}', {"a": json_cases.Spec(1)}
        ),
        "Failed to process element: 0 key: z of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: z",
    )

  def test_mixed_objects_and_lists(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [{"a": 1}, [1]]}', {"a": json_cases.Spec(1)}
        ),
        "Expecting object but got list at item 1 of input list",
    )
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [[1], {"a": [1]}]}', {"a": json_cases.Spec(1)}
        ),
        "Expecting value/list but got object at item 1 of input list",
    )

  def test_multi_input_row_size_mismatch(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"instances": [{"a": [1]}, {"a": [1, 2]}]}',
            {"a": json_cases.Spec(1)},
        ),
        "Failed to process element: 1 key: a of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 1 but got: 2",
    )


class ColumnarFormatTest(json_cases.ErrorAssertions):

  def test_single_input_list(self):
    inputs, fmt = json_cases.parse(
        '{"inputs": [[1, 2], [3, 4]]}', {"x": json_cases.Spec(1)}
    )
    self.assertEqual(fmt, predict_request.COLUMNAR)
    np.testing.assert_array_equal(inputs["x"], [[1, 2], [3, 4]])

  def test_single_input_scalar(self):
    inputs, _ = json_cases.parse(
        '{"inputs": 5}', {"x": json_cases.Spec(json_cases.DT_INT32)}
    )
    self.assertEqual(inputs["x"].shape, ())
    self.assertEqual(inputs["x"], 5)
    inputs, _ = json_cases.parse(
        '{"inputs": {"b64": "aGk="}}',
        {"x": json_cases.Spec(json_cases.DT_STRING)},
    )
    self.assertEqual(inputs["x"].shape, ())
    self.assertEqual(inputs["x"].item(), b"hi")

  def test_single_input_named(self):
    inputs, _ = json_cases.parse(
        '{"inputs": {"x": [1, 2], "ignored": 1}}', {"x": json_cases.Spec(1)}
    )
    np.testing.assert_array_equal(inputs["x"], [1, 2])

  def test_multiple_inputs_own_batch_sizes(self):
    inputs, _ = json_cases.parse(
        '{"inputs": {"a": [1, 2, 3], "b": [["x"]]}}',
        {
            "a": json_cases.Spec(json_cases.DT_INT64),
            "b": json_cases.Spec(json_cases.DT_STRING),
        },
    )
    self.assertEqual(inputs["a"].shape, (3,))
    self.assertEqual(inputs["b"].shape, (1, 1))

  def test_missing_named_input(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": {"a": [1]}}',
            {"a": json_cases.Spec(1), "b": json_cases.Spec(1)},
        ),
        "Missing named input: b in 'inputs' object.",
    )

  def test_plain_value_with_several_inputs(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [1]}',
            {"a": json_cases.Spec(1), "b": json_cases.Spec(1)},
        ),
        "inputs is a plain value/list, but expecting an object as multiple "
        "input tensors required as per tensorinfo_map",
    )

  def test_ragged_columnar_names_input(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": {"a": [[1, 2], [3]], "b": 1}}',
            {"a": json_cases.Spec(1), "b": json_cases.Spec(1)},
        ),
        "Encountered list at unexpected size: 1 at level: 1 expected size: 2 "
        '(input: a, at: inputs["a"][1], expected shape: [2,2])',
    )

  def test_too_many_dimensions(self):
    deep = "[" * 70 + "1" + "]" * 70
    self.assert_error(
        lambda: json_cases.parse(
            f'{{"inputs": {deep}}}', {"x": json_cases.Spec(json_cases.DT_FLOAT)}
        ),
        "Input: x has 70 dimensions; at most 64 are supported",
    )
    rows = "[" * 65 + "1" + "]" * 65  # Rows of 64 dimensions.
    self.assert_error(
        lambda: json_cases.parse(
            f'{{"instances": {rows}}}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Rows have 64 dimensions; at most 63 are supported, "
        "as the batch adds one",
    )
    # Nesting beyond the parser's limit is a parse error, not a crash.
    deeper = "[" * 2000 + "]" * 2000
    self.assert_error(
        lambda: json_cases.parse(
            f'{{"inputs": {deeper}}}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "JSON Parse error: ",
        exact=False,
    )

  def test_shapes_are_not_checked_against_the_spec(self):
    # As upstream: the model's ops decide which shapes they take.
    inputs, _ = json_cases.parse(
        '{"inputs": [[1, 2, 3]]}',
        {"x": json_cases.Spec(json_cases.DT_FLOAT, [-1, 2])},
    )
    self.assertEqual(inputs["x"].shape, (1, 3))

  def test_huge_numbers_are_parse_errors(self):
    # 10**400 is no double: rapidjson's "Number too big", a 400, never a 500.
    for literal in ("1" + "0" * 400, "-1" + "0" * 400, "1e400"):
      self.assert_error(
          lambda literal=literal: json_cases.parse(
              f'{{"instances": [{literal}]}}',
              {"x": json_cases.Spec(json_cases.DT_FLOAT)},
          ),
          "JSON Parse error: Number too big to be stored in double. at "
          "offset: ",
          exact=False,
      )

  def test_decode_predict_asks_lookup_for_the_named_signature(self):
    seen = []

    class Sig:
      inputs = {"x": json_cases.Spec(json_cases.DT_FLOAT)}

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
    inputs, _ = json_cases.parse(
        body, {"x": json_cases.Spec(json_cases.DT_FLOAT)}
    )
    np.testing.assert_array_equal(inputs["x"], values)
    flat, shape = predict_request._exact_values(
        values.tolist(),
        targets.target_for_spec(json_cases.Spec(json_cases.DT_FLOAT)),
        "x",
        "",
    )
    np.testing.assert_array_equal(
        np.array(flat, np.float32).reshape(shape), values
    )


class SimplePredictTest(parameterized.TestCase):
  """The simdjson fast path gives exactly what the general path gives."""

  @parameterized.parameters(
      (
          '{"instances": [[0.0, 0.5, 1.0], [0.25, 3, -7.5]]}',
          json_cases.DT_FLOAT,
      ),
      (
          '{"signature_name": "s[0]", "instances": [[1e-7, 2.5e6]]}',
          json_cases.DT_DOUBLE,
      ),
      ('{"instances": [0.1, 0.2, 0.3]}', json_cases.DT_FLOAT),
      ('{"inputs": [[1, 2], [3, 4]]}', json_cases.DT_FLOAT),
      (
          '{"signature_name": "", "inputs": [0.3333333333333333]}',
          json_cases.DT_DOUBLE,
      ),
      ('{"instances": [[16777215, -16777215]]}', json_cases.DT_FLOAT),
  )
  def test_same_tensor_as_the_general_path(self, body, dtype):
    simple = predict_request.parse_simple_predict(body.encode())
    self.assertIsNotNone(simple)
    doc = json.loads(body)
    self.assertEqual(simple.signature_name, doc.get("signature_name", ""))
    specs = {"x": json_cases.Spec(dtype)}
    fast = predict_request.simple_predict_inputs(simple, specs)
    general, request_format = json_cases.parse(body, specs)
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
        predict_request.simple_predict_inputs(
            simple, {"x": json_cases.Spec(json_cases.DT_INT64)}
        )
    )
    self.assertIsNone(
        predict_request.simple_predict_inputs(
            simple,
            {
                "x": json_cases.Spec(json_cases.DT_FLOAT),
                "y": json_cases.Spec(json_cases.DT_FLOAT),
            },
        )
    )


if __name__ == "__main__":
  absltest.main()
