"""Tests for targets: how JSON numbers convert to each dtype, and its range."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor.test_util import json_cases


class NumericRangeTest(json_cases.ErrorAssertions):

  @parameterized.parameters(
      (json_cases.DT_INT8, "300", "int8"),
      (json_cases.DT_INT8, "-129", "int8"),
      (json_cases.DT_UINT8, "-1", "uint8"),
      (json_cases.DT_INT32, "2147483648", "int32"),
      (json_cases.DT_INT64, "9223372036854775808", "int64"),
      (json_cases.DT_UINT64, "-1", "uint64"),
      (json_cases.DT_INT32, "NaN", "int32"),
  )
  def test_out_of_range_ints(self, dtype, literal, name):
    self.assert_error(
        lambda: json_cases.parse(
            f'{{"inputs": [1, {literal}]}}', {"x": json_cases.Spec(dtype)}
        ),
        f"JSON Value: {literal} Type: Number is not of expected type: {name}",
    )

  def test_lossy_integers(self):
    inputs, _ = json_cases.parse(
        '{"inputs": [16777215, -16777215]}', {"x": json_cases.Spec(1)}
    )
    self.assertEqual(inputs["x"].tolist(), [16777215, -16777215])
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [1, 16777217]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Cannot convert JSON value: 16777217 to float without loss of "
        "precision.",
    )
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [9007199254740993]}', {"x": json_cases.Spec(2)}
        ),
        "Cannot convert JSON value: 9007199254740993 to double without loss "
        "of precision.",
    )

  def test_lossy_decimals(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [1.5, 1e39]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "Cannot convert JSON value: 1e+39 to float without loss of precision.",
    )
    # NaN does not hide an out-of-range neighbour.
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [NaN, 1e39]}',
            {"x": json_cases.Spec(json_cases.DT_FLOAT)},
        ),
        "without loss of precision",
        exact=False,
    )
    inputs, _ = json_cases.parse(
        '{"inputs": [1e39]}', {"x": json_cases.Spec(json_cases.DT_DOUBLE)}
    )
    self.assertEqual(inputs["x"].tolist(), [1e39])

  def test_unsupported_dtype_unimplemented(self):
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [1]}', {"x": json_cases.Spec(json_cases.DT_COMPLEX64)}
        ),
        "Conversion of JSON Value: 1 to type: complex64",
        status.Code.UNIMPLEMENTED,
    )

  def test_half_and_bfloat16_extensions(self):
    inputs, _ = json_cases.parse(
        '{"inputs": [1.5, 2]}', {"x": json_cases.Spec(19)}
    )
    self.assertEqual(inputs["x"].dtype, np.float16)
    inputs, _ = json_cases.parse(
        '{"inputs": [1.5, 2]}', {"x": json_cases.Spec(14)}
    )
    self.assertEqual(inputs["x"].dtype.name, "bfloat16")
    self.assert_error(
        lambda: json_cases.parse(
            '{"inputs": [70000.5]}', {"x": json_cases.Spec(19)}
        ),
        "Cannot convert JSON value: 70000.5 to half without "
        "loss of precision.",
    )


if __name__ == "__main__":
  absltest.main()
