"""Server-level Classify/Regress/MultiInference: ModelSpec checks and echo."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id
from tensorflow_serving.model_servers import classification_service_impl
from tensorflow_serving.model_servers import multi_inference_impl
from tensorflow_serving.model_servers import regression_service_impl
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import status

VERSION = 42


class FakeCore:
  """Serves one bundle as model `m`, version 42; records the specs asked."""

  def __init__(self, bundle):
    self.bundle = bundle
    self.specs: list[model_pb2.ModelSpec] = []

  def get_servable_handle(self, model_spec: model_pb2.ModelSpec):
    self.specs.append(model_spec)
    if model_spec.name != "m":
      raise status.not_found(
          f"Servable not found for request: Latest({model_spec.name})"
      )
    return servable_handle.ServableHandle(
        servable_id.ServableId("m", VERSION), self.bundle
    )


def example(x: float) -> example_pb2.Example:
  result = example_pb2.Example()
  result.features.feature["x"].float_list.value.append(x)
  return result


class ImplTest(absltest.TestCase):

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

  def setUp(self):
    super().setUp()
    self.core = FakeCore(self.bundle)

  def test_classify(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.append(example(2.0))
    response = classification_service_impl.classify(self.core, request)
    self.assertEqual(response.model_spec.name, "m")
    self.assertEqual(response.model_spec.version.value, VERSION)
    self.assertEqual(response.model_spec.signature_name, "classify_x_to_y")
    self.assertEqual(response.result.classifications[0].classes[0].score, 3.0)

  def test_regress(self):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.append(example(4.0))
    response = regression_service_impl.regress(self.core, request)
    self.assertEqual(response.model_spec.name, "m")
    self.assertEqual(response.model_spec.version.value, VERSION)
    self.assertEqual(response.model_spec.signature_name, "regress_x_to_y")
    self.assertEqual(response.result.regressions[0].value, 4.0)

  def test_missing_model_spec(self):
    for fn, request in (
        (
            classification_service_impl.classify,
            classification_pb2.ClassificationRequest(),
        ),
        (regression_service_impl.regress, regression_pb2.RegressionRequest()),
    ):
      with self.assertRaises(status.ServingError) as ctx:
        fn(self.core, request)
      self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
      self.assertEqual(ctx.exception.message, "Missing ModelSpec")

  def test_multi_inference_uses_first_task_spec(self):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ):
      task = request.tasks.add()
      task.model_spec.name = "m"
      task.model_spec.signature_name = signature
      task.method_name = method
    request.tasks[0].model_spec.version.value = VERSION
    request.input.example_list.examples.append(example(2.0))
    response = multi_inference_impl.multi_inference(self.core, request)
    self.assertLen(self.core.specs, 1)
    self.assertEqual(self.core.specs[0].signature_name, "classify_x_to_y")
    self.assertEqual(
        [
            (
                r.model_spec.name,
                r.model_spec.version.value,
                r.model_spec.signature_name,
            )
            for r in response.results
        ],
        [("m", VERSION, "classify_x_to_y"), ("m", VERSION, "regress_x_to_y")],
    )
    self.assertEqual(
        response.results[1].regression_result.regressions[0].value, 3.0
    )

  def test_multi_inference_no_tasks(self):
    with self.assertRaises(status.ServingError) as ctx:
      multi_inference_impl.multi_inference(
          self.core, inference_pb2.MultiInferenceRequest()
      )
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        ctx.exception.message,
        "MultiInferenceRequest must have at least one task",
    )
    self.assertEmpty(self.core.specs)


if __name__ == "__main__":
  absltest.main()
