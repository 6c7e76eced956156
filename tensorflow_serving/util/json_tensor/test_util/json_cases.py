"""What the json_tensor tests share: dtype numbers, a spec, error checks.

The codec takes any object with `dtype` and `shape` as an input's spec, so
the tests describe signatures without building SignatureDefs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from absl.testing import parameterized

from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import predict_request

# tensorflow/core/framework/types.proto values.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT8 = 1, 2, 3, 4, 6
DT_STRING, DT_COMPLEX64, DT_INT64, DT_BOOL, DT_UINT64 = 7, 8, 9, 10, 23


@dataclasses.dataclass
class Spec:
  dtype: Any
  shape: list[int] | None = None


def parse(body: str | bytes, specs: dict[str, Any], **kwargs):
  """A Predict body's inputs, decoded as the REST handler decodes them."""
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
    """`fn()` fails with `code` and `message` (contained, if not `exact`)."""
    with self.assertRaises(status.ServingError) as cm:
      fn()
    self.assertEqual(cm.exception.code, code, cm.exception.message)
    if exact:
      self.assertEqual(cm.exception.message, message)
    else:
      self.assertIn(message, cm.exception.message)
    return cm.exception
