"""Request logging through the pipeline: gRPC and REST write one PredictionLog.

The servicers and the REST handler run in process over real bundles; the
logs are read back with TensorFlow's own TFRecord reader and replayed
through warmup's Predict, so what is logged is what upstream tools read.
"""

from __future__ import annotations

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.config import logging_config_pb2
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers.test_util import in_process
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import metrics

VERSION = 42


def example(x: float) -> example_pb2.Example:
  result = example_pb2.Example()
  result.features.feature["x"].float_list.value.append(x)
  return result


def logging_config(prefix: str, rate: float = 1.0):
  config = logging_config_pb2.LoggingConfig()
  config.log_collector_config.type = "tfrecord"
  config.log_collector_config.filename_prefix = prefix
  config.sampling_config.sampling_rate = rate
  return config


class RequestLoggingTest(in_process.HalfPlusTwoTestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.core = in_process.FakeCore(
        {"half": (VERSION, self.bundle), "m": (VERSION, self.examples)}
    )
    self.addCleanup(self.core.request_logger.stop)
    pipeline = in_process.make_pipeline(self.core)
    self.grpc = grpc_services.PredictionService(pipeline)
    self.rest = http_rest_api_handler.HttpRestApiHandler(pipeline)

  def enable(self, **rates: float) -> None:
    self.core.request_logger.update(
        {
            name: [logging_config(os.path.join(self.dir, name), rate)]
            for name, rate in rates.items()
        }
    )

  def call(self, method, request):
    return in_process.run(
        getattr(self.grpc, method)(request, in_process.FakeContext())
    )

  def post(self, path, body):
    response = in_process.run(
        self.rest.handle("POST", path, json.dumps(body).encode())
    )
    self.assertEqual(response.status, 200, response.body)
    return json.loads(response.body)

  def logs(self, name: str) -> list[prediction_log_pb2.PredictionLog]:
    self.core.request_logger.stop()
    files = sorted(
        os.path.join(self.dir, f)
        for f in os.listdir(self.dir)
        if f.startswith(name + "-")
    )
    return [
        prediction_log_pb2.PredictionLog.FromString(raw.numpy())
        for raw in tf.data.TFRecordDataset(files)
    ]

  def predict_request(self, x, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.asarray(x, np.float32))
    )
    return request

  def test_grpc_and_rest_predict_give_the_same_replayable_log(self):
    self.enable(half=1.0)
    self.call("Predict", self.predict_request([1.0, 2.0]))
    self.post(
        "/v1/models/half:predict",
        {"signature_name": "serving_default", "instances": [1.0, 2.0]},
    )
    grpc_log, rest_log = self.logs("half")
    for log in (grpc_log, rest_log):
      self.assertEqual(log.WhichOneof("log_type"), "predict_log")
      md = log.log_metadata
      self.assertEqual(
          (md.model_spec.name, md.model_spec.version.value),
          ("half", VERSION),
      )
      self.assertEqual(md.model_spec.signature_name, "serving_default")
      self.assertEqual(md.sampling_config.sampling_rate, 1.0)
      self.assertGreater(md.timestamp_secs, 1_700_000_000)
      request = log.predict_log.request
      self.assertEqual(request.model_spec.name, "half")
      np.testing.assert_array_equal(
          tf.make_ndarray(request.inputs["x"]), [1.0, 2.0]
      )
      response = log.predict_log.response
      self.assertEqual(response.model_spec.version.value, VERSION)
      np.testing.assert_array_equal(
          tf.make_ndarray(response.outputs["y"]), [2.5, 3.0]
      )
      # What warmup replays gives what was served.
      replayed = predict_pb2.PredictResponse()
      predict_util.run_predict(self.bundle, request, replayed)
      np.testing.assert_array_equal(
          tf.make_ndarray(replayed.outputs["y"]), [2.5, 3.0]
      )
    self.assertEqual(
        grpc_log.predict_log.request.SerializeToString(deterministic=True),
        rest_log.predict_log.request.SerializeToString(deterministic=True),
    )
    self.assertIn(
        ':tensorflow:serving:request_log_count{model_name="half",'
        'status_code="OK"} 2',
        metrics.exposition().decode(),
    )

  def test_classify_regress_and_multi_inference_logs(self):
    self.enable(m=1.0)
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "m"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(example(2.0))
    self.call("Classify", classify)
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "m"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.append(example(2.0))
    self.call("Regress", regress)
    self.post(
        "/v1/models/m:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
    )
    multi = inference_pb2.MultiInferenceRequest()
    task = multi.tasks.add()
    task.model_spec.name = "m"
    task.model_spec.signature_name = "regress_x_to_y"
    task.method_name = "tensorflow/serving/regress"
    multi.input.example_list.examples.append(example(2.0))
    self.call("MultiInference", multi)

    logs = self.logs("m")
    self.assertEqual(
        [log.WhichOneof("log_type") for log in logs],
        ["classify_log", "regress_log", "regress_log", "multi_inference_log"],
    )
    classify_log = logs[0].classify_log
    self.assertEqual(
        classify_log.request.input.example_list.examples[0], example(2.0)
    )
    self.assertLen(classify_log.response.result.classifications, 1)
    self.assertEqual(
        logs[0].log_metadata.model_spec.signature_name, "classify_x_to_y"
    )
    for regress_log in (logs[1].regress_log, logs[2].regress_log):
      self.assertEqual(
          regress_log.request.model_spec.signature_name, "regress_x_to_y"
      )
      self.assertEqual(
          regress_log.request.input.example_list.examples[0], example(2.0)
      )
      self.assertEqual(regress_log.response.result.regressions[0].value, 3.0)
    self.assertEqual(logs[3].multi_inference_log.request, multi)
    self.assertEqual(
        logs[3]
        .multi_inference_log.response.results[0]
        .regression_result.regressions[0]
        .value,
        3.0,
    )

  def test_failed_and_unconfigured_requests_are_not_logged(self):
    self.enable(m=1.0)
    self.call("Predict", self.predict_request([1.0]))  # "half" logs nothing.
    with self.assertRaises(in_process.AbortError):
      regress = regression_pb2.RegressionRequest()
      regress.model_spec.name = "m"
      regress.model_spec.signature_name = "nope"
      self.call("Regress", regress)
    self.assertEqual(self.logs("m"), [])
    self.assertEqual(os.listdir(self.dir), [])

  def test_sampling_rate_zero_writes_nothing(self):
    self.enable(half=0.0)
    for _ in range(20):
      self.call("Predict", self.predict_request([1.0]))
    self.assertEqual(self.logs("half"), [])
    self.assertNotIn("request_log_count{", metrics.exposition().decode())


if __name__ == "__main__":
  absltest.main()
