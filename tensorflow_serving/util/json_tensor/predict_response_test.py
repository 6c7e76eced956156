"""Tests for predict_response: numpy outputs to upstream's JSON."""

from __future__ import annotations

import json
import math

from absl.testing import absltest
import numpy as np

from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import predict_response
from tensorflow_serving.util.json_tensor import targets
from tensorflow_serving.util.json_tensor.test_util import json_cases


class FormatResponseTest(json_cases.ErrorAssertions):

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


if __name__ == "__main__":
  absltest.main()
