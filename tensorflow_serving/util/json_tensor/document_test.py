"""Tests for document: the JSON body as upstream's REST handler parses it."""

from __future__ import annotations

import math

from absl.testing import absltest

from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor.test_util import json_cases


class DecodeBodyTest(json_cases.ErrorAssertions):

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


if __name__ == "__main__":
  absltest.main()
