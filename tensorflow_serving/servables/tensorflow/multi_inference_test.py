"""MultiInference: task checks, one run for all tasks, results in order."""

from __future__ import annotations

import os
import tempfile
from unittest import mock

from absl.testing import absltest
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.servables.tensorflow import multi_inference
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import status

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def make_example(**features: float) -> example_pb2.Example:
  example = example_pb2.Example()
  for name, value in features.items():
    example.features.feature[name].float_list.value.append(value)
  return example


def make_request(
    tasks: list[tuple[str, str]], *xs: float, model: str = "m"
) -> inference_pb2.MultiInferenceRequest:
  request = inference_pb2.MultiInferenceRequest()
  for signature, method in tasks:
    task = request.tasks.add()
    task.model_spec.name = model
    task.model_spec.signature_name = signature
    task.method_name = method
  request.input.example_list.examples.extend(make_example(x=x) for x in xs)
  return request


class MultiInferenceTest(absltest.TestCase):

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

  def infer(self, request, version=None):
    response = inference_pb2.MultiInferenceResponse()
    multi_inference.run_multi_inference(
        self.bundle, request, response, version=version
    )
    return response

  def assert_error(self, code, message, request):
    with self.assertRaises(status.ServingError) as ctx:
      self.infer(request)
    self.assertEqual(ctx.exception.code, code)
    self.assertEqual(ctx.exception.message, message)

  def test_classify_and_regress_in_one_run(self):
    request = make_request(
        [
            ("regress_x_to_y", REGRESS),
            ("classify_both", CLASSIFY),
            ("regress_flat", REGRESS),
        ],
        2.0,
        4.0,
    )
    with mock.patch.object(self.bundle, "run", wraps=self.bundle.run) as run:
      response = self.infer(request, version=7)
    self.assertEqual(run.call_count, 1)
    self.assertLen(response.results, 3)
    signatures = [r.model_spec.signature_name for r in response.results]
    self.assertEqual(
        signatures, ["regress_x_to_y", "classify_both", "regress_flat"]
    )
    for result in response.results:
      self.assertEqual(result.model_spec.name, "m")
      self.assertEqual(result.model_spec.version.value, 7)
    self.assertEqual(
        [r.value for r in response.results[0].regression_result.regressions],
        [3.0, 4.0],
    )
    self.assertEqual(
        [
            [(c.label, c.score) for c in entry.classes]
            for entry in response.results[
                1
            ].classification_result.classifications
        ],
        [[("low", 3.0), ("high", 2.0)], [("low", 4.0), ("high", 4.0)]],
    )
    self.assertEqual(
        [r.value for r in response.results[2].regression_result.regressions],
        [3.0, 4.0],
    )
    self.assertFalse(response.results[2].HasField("classification_result"))

  def test_distinct_input_tensors_share_one_run(self):
    request = make_request(
        [("classify_other_input", CLASSIFY), ("regress_x_to_y", REGRESS)], 2.0
    )
    with mock.patch.object(self.bundle, "run", wraps=self.bundle.run) as run:
      response = self.infer(request)
    self.assertEqual(run.call_count, 1)
    self.assertEqual(
        response.results[0]
        .classification_result.classifications[0]
        .classes[0]
        .score,
        4.0,
    )
    self.assertEqual(
        response.results[1].regression_result.regressions[0].value, 3.0
    )
    self.assertFalse(response.results[0].model_spec.HasField("version"))

  def test_context_input(self):
    request = make_request([("regress_x_to_y", REGRESS)])
    request.input.example_list_with_context.context.CopyFrom(
        make_example(x=4.0)
    )
    request.input.example_list_with_context.examples.add()
    response = self.infer(request)
    self.assertEqual(
        response.results[0].regression_result.regressions[0].value, 4.0
    )

  def test_no_tasks(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "MultiInferenceRequest must have at least one task",
        make_request([], 1.0),
    )

  def test_empty_model_name(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Found ModelSpec with an empty model name.",
        make_request([("regress_x_to_y", REGRESS)], 1.0, model=""),
    )

  def test_model_names_differ(self):
    request = make_request(
        [("regress_x_to_y", REGRESS), ("classify_both", CLASSIFY)], 1.0
    )
    request.tasks[1].model_spec.name = "other"
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "All ModelSpecs in a MultiInferenceRequest must access the same "
        "model name.",
        request,
    )

  def test_duplicate_signature(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Duplicate evaluation of signature: regress_x_to_y",
        make_request(
            [("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)], 1.0
        ),
    )

  def test_signature_not_found(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Requested signature not found in model graph: nope",
        make_request([("regress_x_to_y", REGRESS), ("nope", CLASSIFY)], 1.0),
    )

  def test_unsupported_method(self):
    self.assert_error(
        status.Code.UNIMPLEMENTED,
        "Unsupported signature method_name: tensorflow/serving/predict",
        make_request([("serving_default", "tensorflow/serving/predict")], 1.0),
    )

  def test_task_method_must_match_signature(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Expected regression signature method_name to be "
        "tensorflow/serving/regress. Was: tensorflow/serving/classify",
        make_request([("classify_both", REGRESS)], 1.0),
    )

  def test_empty_input(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Input is empty.",
        make_request([("regress_x_to_y", REGRESS)]),
    )

  def test_output_error_of_one_task_fails_request(self):
    self.assert_error(
        status.Code.INVALID_ARGUMENT,
        "Input batch size did not match output batch size: 2 vs. 1",
        make_request(
            [("classify_both", CLASSIFY), ("regress_bad_batch", REGRESS)],
            1.0,
            2.0,
        ),
    )


if __name__ == "__main__":
  absltest.main()
