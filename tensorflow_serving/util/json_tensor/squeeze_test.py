"""Squeezing whitespace keeps every value, and every error where it was."""

from __future__ import annotations

import json
import random

from absl.testing import absltest
from absl.testing import parameterized
import rapidjson

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import squeeze

# Strings full of what the scan must not touch: spaces, escaped quotes,
# backslash runs of both parities, non-ASCII, and quotes next to them.
DOCS = (
    {"a b": "x  y", "q": 'he said "hi"  ', "n": [1, 2.5, -300.0], "e": []},
    ["  ", '\\"', "\\\\", '"', "caf\u00e9  \t", {"k": None, "t": True}],
    {"instances": [[1.0, 2.0], [3.0, 4.0]], "signature_name": " s  "},
    '  \\"  ',
    5,
)
STEPS = (1, 2, 3, 5, 7, 64)


def _squeezed(body: bytes, step: int) -> squeeze.Squeezed:
  result = squeeze.squeeze(
      body, min_bytes=0, step_bytes=step, min_space_share=0
  )
  assert result is not None
  return result


def _rapidjson_error(body: bytes) -> tuple[str, int]:
  try:
    rapidjson.loads(body, number_mode=rapidjson.NM_NAN | rapidjson.NM_NATIVE)
  except rapidjson.JSONDecodeError as exc:
    message = str(exc)
    offset = int(message.split("offset ")[1].split(":")[0])
    return message.split(": ", 1)[1], offset
  raise AssertionError(f"{body!r} parsed")


class SqueezeTest(parameterized.TestCase):

  def test_values_are_kept_whatever_the_spacing_and_steps(self):
    rng = random.Random(7)
    for doc in DOCS:
      for _ in range(60):
        text = json.dumps(
            doc,
            separators=(
                rng.choice([",", ", ", " ,\n\t "]),
                rng.choice([":", " : ", ":\r\n"]),
            ),
            indent=rng.choice([None, 0, 3]),
            ensure_ascii=rng.choice([True, False]),
        )
        pad = " " * rng.randint(0, 20)
        body = (pad + text + pad).encode()
        for step in STEPS:
          squeezed = _squeezed(body, step)
          self.assertEqual(json.loads(squeezed.body), doc, (body, step))
          self.assertLessEqual(len(squeezed.body), len(body))

  def test_runs_become_one_byte_and_tokens_stay_apart(self):
    for step in STEPS:
      self.assertEqual(_squeezed(b"[1   ,\n\n  2]", step).body, b"[1 ,\n2]")
      self.assertEqual(_squeezed(b"[1     2]", step).body, b"[1 2]")
      self.assertEqual(_squeezed(b'"a    b"   ', step).body, b'"a    b" ')

  @parameterized.parameters(
      b"{" + b" " * 40,
      b"[1,     2,   ]",
      b'{"a"   :   tru    }',
      b"[1     2]",
      b'{"a":  "b\\"   }   ',
      b"   [  1 ,  x ]  ",
      b'{"instances": [1.0,    \x01  2.0]}',
  )
  def test_errors_are_worded_and_placed_as_on_the_original(self, body):
    expected = _rapidjson_error(body)
    for step in STEPS:
      squeezed = _squeezed(body, step)
      message, offset = _rapidjson_error(squeezed.body)
      self.assertEqual(
          (message, squeezed.original_offset(offset)), expected, step
      )

  def test_long_backslash_runs_give_up_rather_than_crawl(self):
    def body(run: int) -> bytes:
      # Strings of escaped backslashes: each closing quote follows a run.
      item = b'"' + b"\\" * run + b'"'
      return b"[" + (b"," + b" " * (3 * run)).join([item] * 8) + b"]"

    over = body(squeeze.MAX_BACKSLASH_WALK // 4)
    self.assertIsNone(squeeze.squeeze(over, min_bytes=0, step_bytes=1 << 16))
    # Under the budget the same shape is squeezed, and parses the same.
    under = body(100)
    squeezed = _squeezed(under, 1 << 16)
    self.assertEqual(json.loads(squeezed.body), json.loads(under))
    self.assertLess(len(squeezed.body), len(under) // 2)

  def test_small_or_dense_bodies_are_left_alone(self):
    self.assertIsNone(squeeze.squeeze(b" " * 100))  # Under MIN_BYTES.
    dense = b"[" + b"1," * squeeze.MIN_BYTES + b"1]"
    self.assertIsNone(squeeze.squeeze(dense))
    self.assertIsNone(squeeze.squeeze("  " * squeeze.MIN_BYTES))  # str


class PaddedBodyTest(absltest.TestCase):
  """Bodies padded past MIN_BYTES, through the decoders."""

  def test_predict_body_with_whitespace_inside(self):
    body = b'{"instances": [' + b" " * (2 * squeeze.MIN_BYTES) + b"2.0]}"
    decoded = predict_request.decode_predict(
        body, lambda name: _Sig({"x": _Spec()})
    )
    self.assertEqual(decoded.inputs["x"].tolist(), [2.0])

  def test_error_offset_is_the_original_one(self):
    body = b"{" + b" " * (2 * squeeze.MIN_BYTES) + b"}x"
    with self.assertRaises(status.ServingError) as cm:
      document.decode_json_body(body)
    message, offset = _rapidjson_error(body)
    self.assertEqual(
        cm.exception.message,
        f"JSON Parse error: {message} at offset: {offset}",
    )
    self.assertEqual(offset, len(body) - 1)


class _Spec:
  dtype = 1  # DT_FLOAT
  shape = None


class _Sig:

  def __init__(self, inputs):
    self.inputs = inputs


if __name__ == "__main__":
  absltest.main()
