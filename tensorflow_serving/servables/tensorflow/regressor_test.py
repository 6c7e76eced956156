"""Regress over protos and serialized Examples, with upstream's errors."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
import numpy as np
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import status


def make_example(**features: float) -> example_pb2.Example:
  example = example_pb2.Example()
  for name, value in features.items():
    example.features.feature[name].float_list.value.append(value)
  return example


def make_request(
    signature: str,
    *xs: float | None,
    context: example_pb2.Example | None = None,
) -> regression_pb2.RegressionRequest:
  request = regression_pb2.RegressionRequest()
  request.model_spec.name = "m"
  request.model_spec.signature_name = signature
  examples = [
      make_example(x=x) if x is not None else make_example() for x in xs
  ]
  if context is None:
    request.input.example_list.examples.extend(examples)
  else:
    request.input.example_list_with_context.context.CopyFrom(context)
    request.input.example_list_with_context.examples.extend(examples)
  return request


class RegressorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    path = half_plus_two.export_example_signatures_tf1(os.path.join(tmp, "1"))
    cls.bundle = saved_model_bundle.load_saved_model_bundle(path, ["serve"])

  @classmethod
  def tearDownClass(cls):
    cls.bundle.close()
    super().tearDownClass()

  def regress(self, request):
    response = regression_pb2.RegressionResponse()
    regressor.run_regress(self.bundle, request, response)
    return response

  def values(self, request):
    return [r.value for r in self.regress(request).result.regressions]

  def assert_error(self, code, message, request):
    with self.assertRaises(status.ServingError) as ctx:
      self.regress(request)
    self.assertEqual(ctx.exception.code, code)
    self.assertEqual(ctx.exception.message, message)

  def test_output_n_by_1(self):
    response = self.regress(make_request("regress_x_to_y", 1.0, 2.0, 5.0))
    self.assertEqual(response.model_spec.signature_name, "regress_x_to_y")
    self.assertEqual(
        [r.value for r in response.result.regressions], [2.5, 3.0, 4.5]
    )

  def test_output_n(self):
    self.assertEqual(self.values(make_request("regress_flat", 4.0)), [4.0])

  def test_context(self):
    self.assertEqual(
        self.values(
            make_request(
                "regress_x_to_y", None, 2.0, None, context=make_example(x=10.0)
            )
        ),
        [7.0, 3.0, 7.0],
    )

  def test_serialized_helper(self):
    examples = [
        make_example(x=2.0).SerializeToString(),
        make_example().SerializeToString(),
    ]
    values = regressor.regress(
        self.bundle,
        "regress_x_to_y",
        example_input.examples_tensor(
            examples, make_example(x=6.0).SerializeToString()
        ),
    )
    self.assertEqual(values.dtype, np.float32)
    self.assertEqual(values.tolist(), [3.0, 5.0])
    self.assertEqual(
        regressor.regress(
            self.bundle,
            "regress_flat",
            example_input.examples_tensor(examples[:1]),
        ).tolist(),
        [3.0],
    )

  def test_empty_input(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Input is empty.",
        make_request("regress_x_to_y"),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Input is empty.",
        make_request("regress_x_to_y", context=make_example(x=1.0)),
    )
    with self.assertRaisesRegex(status.ServingError, "^Input is empty.$"):
      regressor.regress(
          self.bundle,
          "regress_x_to_y",
          example_input.examples_tensor([], b"ctx"),
      )

  def test_unknown_signature(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
        make_request("nope", 1.0),
    )

  def test_wrong_method_name(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected regression signature method_name to be "
        "tensorflow/serving/regress. Was: tensorflow/serving/predict",
        make_request("", 1.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected regression signature method_name to be "
        "tensorflow/serving/regress. Was: tensorflow/serving/classify",
        make_request("classify_x_to_y", 1.0),
    )

  def test_method_name_check_can_be_disabled(self):
    example_input.set_signature_method_name_check(False)
    self.addCleanup(example_input.set_signature_method_name_check, True)
    self.assert_error(
        status.Code.FAILED_PRECONDITION,
        "No regression outputs found in SignatureDef: classify_x_to_y "
        "expects the output 'outputs' but has {scores}",
        make_request("classify_x_to_y", 1.0),
    )

  def test_signature_errors(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected one output Tensor.",
        make_request("regress_two_outputs", 1.0),
    )
    self.assert_error(
        status.Code.FAILED_PRECONDITION,
        "No regression outputs found in SignatureDef: regress_wrong_alias "
        "expects the output 'outputs' but has {scores}",
        make_request("regress_wrong_alias", 1.0),
    )

  def test_output_errors(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected output Tensor shape to be either [batch_size] or "
        "[batch_size, 1] but got [2,2]",
        make_request("regress_wide", 1.0, 2.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Input batch size did not match output batch size: 3 vs. 1",
        make_request("regress_bad_batch", 1.0, 2.0, 3.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected output Tensor of DT_FLOAT.  Got: DT_INT64",
        make_request("regress_int_output", 1.0),
    )


if __name__ == "__main__":
  absltest.main()
