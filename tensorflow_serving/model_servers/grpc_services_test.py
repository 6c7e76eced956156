"""The gRPC servicers in process: decode, pipeline, encode, status codes."""

from __future__ import annotations

from absl.testing import absltest
import grpc
import numpy as np
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.test_util import in_process
from tensorflow_serving.util import metrics

VERSION = 42


def example(x: float) -> example_pb2.Example:
  result = example_pb2.Example()
  result.features.feature["x"].float_list.value.append(x)
  return result


class PredictionServiceTest(in_process.HalfPlusTwoTestCase):

  def setUp(self):
    super().setUp()
    self.core = in_process.FakeCore(
        {"half": (VERSION, self.bundle), "m": (VERSION, self.examples)}
    )
    self.service = grpc_services.PredictionService(
        in_process.make_pipeline(self.core)
    )

  def call(self, method, request):
    return in_process.run(
        getattr(self.service, method)(request, in_process.FakeContext())
    )

  def assert_aborts(self, method, request, code, details):
    with self.assertRaises(in_process.AbortError) as ctx:
      self.call(method, request)
    self.assertEqual(ctx.exception.code, code)
    self.assertEqual(ctx.exception.details, details)

  def predict_request(self, x, signature="", model="half"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.asarray(x, np.float32))
    )
    return request

  def test_predict_echoes_the_served_version_and_signature(self):
    response = self.call("Predict", self.predict_request([1.0, 2.0]))
    self.assertEqual(response.model_spec.name, "half")
    self.assertEqual(response.model_spec.version.value, VERSION)
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertEqual(list(response.outputs["y"].float_val), [2.5, 3.0])

  def test_predict_errors_are_statuses(self):
    self.assert_aborts(
        "Predict",
        predict_pb2.PredictRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Missing ModelSpec",
    )
    self.assert_aborts(
        "Predict",
        self.predict_request([1.0], model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )
    self.assert_aborts(
        "Predict",
        self.predict_request([1.0], signature="nope"),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )

  def test_predict_metrics_recorded_once_per_request(self):
    self.call("Predict", self.predict_request([1.0]))
    with self.assertRaises(in_process.AbortError):
      self.call("Predict", self.predict_request([1.0], signature="nope"))
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="half",status="OK"} 1',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:request_count{model_name="half",'
        'status="FAILED_PRECONDITION"} 1',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:request_latency_count{API="Predict",'
        'entrypoint="GRPC",model_name="half"} 1.0',
        text,
    )
    self.assertIn(
        ':tensorflow:serving:runtime_latency_count{API="Predict",'
        'model_name="half",runtime="TF1"} 1.0',
        text,
    )

  def test_classify(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "classify_x_to_y"
    request.input.example_list.examples.append(example(2.0))
    response = self.call("Classify", request)
    self.assertEqual(response.model_spec.name, "m")
    self.assertEqual(response.model_spec.version.value, VERSION)
    self.assertEqual(response.model_spec.signature_name, "classify_x_to_y")
    self.assertEqual(response.result.classifications[0].classes[0].score, 3.0)
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:request_example_count_total{model="m"} 1', text
    )

  def test_regress(self):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.append(example(4.0))
    response = self.call("Regress", request)
    self.assertEqual(response.model_spec.name, "m")
    self.assertEqual(response.model_spec.version.value, VERSION)
    self.assertEqual(response.model_spec.signature_name, "regress_x_to_y")
    self.assertEqual(response.result.regressions[0].value, 4.0)

  def test_missing_model_spec(self):
    for method, request in (
        ("Classify", classification_pb2.ClassificationRequest()),
        ("Regress", regression_pb2.RegressionRequest()),
    ):
      with self.subTest(method):
        self.assert_aborts(
            method,
            request,
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing ModelSpec",
        )

  def test_classify_signature_is_resolved_before_the_input(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "nope"
    self.assert_aborts(
        "Classify",
        request,
        grpc.StatusCode.INVALID_ARGUMENT,
        "No signature was found with the name: nope",
    )

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
    response = self.call("MultiInference", request)
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
    self.assert_aborts(
        "MultiInference",
        inference_pb2.MultiInferenceRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "MultiInferenceRequest must have at least one task",
    )
    self.assertEmpty(self.core.specs)

  def test_get_model_metadata(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"]
    )
    request.model_spec.name = "half"
    response = self.call("GetModelMetadata", request)
    self.assertEqual(response.model_spec.version.value, VERSION)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    self.assertIn("serving_default", sig_map.signature_def)


if __name__ == "__main__":
  absltest.main()
