"""Classify over protos and serialized Examples, with upstream's errors."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
import numpy as np
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import example_input
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
) -> classification_pb2.ClassificationRequest:
  request = classification_pb2.ClassificationRequest()
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


def pairs(response: classification_pb2.ClassificationResponse):
  return [
      [(c.label, c.score) for c in entry.classes]
      for entry in response.result.classifications
  ]


class ClassifierTest(absltest.TestCase):

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

  def classify(self, request):
    response = classification_pb2.ClassificationResponse()
    classifier.run_classify(self.bundle, request, response)
    return response

  def assert_error(self, code, message, request):
    with self.assertRaises(status.ServingError) as ctx:
      self.classify(request)
    self.assertEqual(ctx.exception.code, code)
    self.assertEqual(ctx.exception.message, message)

  def test_classes_and_scores(self):
    response = self.classify(make_request("classify_both", 1.0, 4.0))
    self.assertEqual(response.model_spec.signature_name, "classify_both")
    self.assertEqual(
        pairs(response),
        [[("low", 2.5), ("high", 1.0)], [("low", 4.0), ("high", 4.0)]],
    )

  def test_scores_only_gives_empty_labels(self):
    response = self.classify(make_request("classify_x_to_y", 2.0, 6.0))
    self.assertEqual(pairs(response), [[("", 3.0)], [("", 5.0)]])

  def test_classes_only_gives_zero_scores(self):
    response = self.classify(make_request("classify_classes_only", 2.0))
    self.assertEqual(pairs(response), [[("low", 0.0), ("high", 0.0)]])

  def test_any_single_input_alias(self):
    response = self.classify(make_request("classify_custom_alias", 2.0))
    self.assertEqual(pairs(response), [[("", 3.0), ("", 2.0)]])

  def test_context_is_merged_and_examples_override(self):
    # Example 0 takes x from the context; example 1 overrides it.
    response = self.classify(
        make_request("classify_x_to_y", None, 2.0, context=make_example(x=10.0))
    )
    self.assertEqual(pairs(response), [[("", 7.0)], [("", 3.0)]])

  def test_serialized_helper_matches_json_tensor_output(self):
    examples = [
        make_example(x=2.0).SerializeToString(),
        make_example().SerializeToString(),
    ]
    context = make_example(x=4.0).SerializeToString()
    self.assertEqual(
        classifier.classify(
            self.bundle,
            "classify_both",
            example_input.examples_tensor(examples, context),
        ),
        [[(b"low", 3.0), (b"high", 2.0)], [(b"low", 4.0), (b"high", 4.0)]],
    )
    self.assertEqual(
        classifier.classify(
            self.bundle,
            "classify_x_to_y",
            example_input.examples_tensor(examples[:1]),
        ),
        [[(b"", 3.0)]],
    )

  def test_serialized_helper_empty(self):
    with self.assertRaisesRegex(status.ServingError, "^Input is empty.$"):
      classifier.classify(
          self.bundle, "classify_both", example_input.examples_tensor([])
      )

  def test_empty_input(self):
    request = make_request("classify_both")
    self.assert_error(status.Code.INVALID_ARGUMENT, "Input is empty.", request)
    request.input.example_list_with_context.context.CopyFrom(
        make_example(x=1.0)
    )
    self.assert_error(status.Code.INVALID_ARGUMENT, "Input is empty.", request)
    request = classification_pb2.ClassificationRequest()  # No kind set.
    request.model_spec.signature_name = "classify_both"
    self.assert_error(status.Code.INVALID_ARGUMENT, "Input is empty.", request)

  def test_unknown_signature(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
        make_request("nope", 1.0),
    )

  def test_wrong_method_name(self):
    # Empty resolves to serving_default, a predict signature.
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be "
        "tensorflow/serving/classify. Was: tensorflow/serving/predict",
        make_request("", 1.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be "
        "tensorflow/serving/classify. Was: tensorflow/serving/regress",
        make_request("regress_x_to_y", 1.0),
    )

  def test_method_name_check_can_be_disabled(self):
    example_input.set_signature_method_name_check(False)
    self.addCleanup(example_input.set_signature_method_name_check, True)
    # A regress signature whose output is not classes/scores still fails on
    # outputs, but not on its method name.
    self.assert_error(
        status.Code.FAILED_PRECONDITION,
        "Expected classification signature outputs to contain at least one "
        'of "classes" or "scores". Signature was: regress_flat with outputs '
        "{outputs}",
        make_request("regress_flat", 1.0),
    )

  def test_input_must_be_single_string(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected one input Tensor.",
        make_request("classify_two_inputs", 1.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected input Tensor 'inputs' of signature classify_float_input to "
        "be DT_STRING (serialized tf.Examples). Got: DT_FLOAT",
        make_request("classify_float_input", 1.0),
    )

  def test_output_errors(self):
    self.assert_error(
        status.Code.FAILED_PRECONDITION,
        "Expected classification signature outputs to contain at least one "
        'of "classes" or "scores". Signature was: classify_no_known_outputs '
        "with outputs {probabilities}",
        make_request("classify_no_known_outputs", 1.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Tensors class and score should match in dim_size(1). Got 3 vs. 2",
        make_request("classify_mismatched_k", 1.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected Tensor shape: [batch_size num_classes] but got [2]",
        make_request("classify_scores_1d", 1.0, 2.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected scores output batch size of 3. Got: 1",
        make_request("classify_bad_batch", 1.0, 2.0, 3.0),
    )
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected classes Tensor of DT_STRING. Got: DT_FLOAT",
        make_request("classify_float_classes", 1.0),
    )

  def test_missing_feature_is_tf_error(self):
    with self.assertRaises(status.ServingError) as ctx:
      self.classify(make_request("classify_both", None))
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertIn(
        "Feature: x (data type: float) is required", ctx.exception.message
    )

  def test_non_utf8_label_is_replaced(self):
    outputs = {classifier.CLASSES: np.array([[b"\xffa"]], dtype=object)}
    result = classification_pb2.ClassificationResult()
    classifier.fill_classification_result(
        classifier.classifications_from_outputs(1, outputs), result
    )
    self.assertEqual(result.classifications[0].classes[0].label, "\ufffda")


if __name__ == "__main__":
  absltest.main()
