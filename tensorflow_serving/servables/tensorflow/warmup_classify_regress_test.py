"""Warmup replay of classify_log, regress_log and multi_inference_log."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
import tensorflow as tf
from tensorflow.core.example import example_pb2

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import warmup
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import status


def _example(x: float) -> example_pb2.Example:
  example = example_pb2.Example()
  example.features.feature["x"].float_list.value.append(x)
  return example


def classify_log(signature: str = "classify_both"):
  log = prediction_log_pb2.PredictionLog()
  request = log.classify_log.request
  request.model_spec.name = "m"
  request.model_spec.signature_name = signature
  request.input.example_list.examples.append(_example(1.0))
  return log


def regress_log():
  log = prediction_log_pb2.PredictionLog()
  request = log.regress_log.request
  request.model_spec.name = "m"
  request.model_spec.signature_name = "regress_x_to_y"
  request.input.example_list_with_context.context.CopyFrom(_example(2.0))
  request.input.example_list_with_context.examples.add()
  # The logged response is ignored, however wrong.
  log.regress_log.response.result.regressions.add(value=-1.0)
  return log


def multi_inference_log():
  log = prediction_log_pb2.PredictionLog()
  request = log.multi_inference_log.request
  for signature, method in (
      ("classify_both", "tensorflow/serving/classify"),
      ("regress_flat", "tensorflow/serving/regress"),
  ):
    task = request.tasks.add()
    task.model_spec.name = "m"
    task.model_spec.signature_name = signature
    task.method_name = method
  request.input.example_list.examples.extend([_example(1.0), _example(3.0)])
  return log


class WarmupClassifyRegressTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    cls.export_dir = half_plus_two.export_example_signatures_tf1(
        os.path.join(tmp, "1")
    )
    cls.bundle = saved_model_bundle.load_saved_model_bundle(
        cls.export_dir, ["serve"]
    )

  @classmethod
  def tearDownClass(cls):
    cls.bundle.close()
    super().tearDownClass()

  def write_records(self, records: list[bytes]) -> str:
    path = warmup.warmup_path(self.export_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self.addCleanup(os.remove, path)
    with tf.io.TFRecordWriter(path) as writer:
      for record in records:
        writer.write(record)
    return path

  def test_replays_each_kind(self):
    self.write_records(
        [
            classify_log().SerializeToString(),
            regress_log().SerializeToString(),
            multi_inference_log().SerializeToString(),
        ]
    )
    self.assertEqual(warmup.run_warmup(self.bundle, self.export_dir), 3)
    self.assertEqual(
        warmup.run_warmup(
            self.bundle, self.export_dir, num_request_iterations=3
        ),
        3,
    )

  def test_failing_request_fails_warmup(self):
    self.write_records([classify_log("nope").SerializeToString()])
    with self.assertRaises(status.ServingError) as ctx:
      warmup.run_warmup(self.bundle, self.export_dir)
    self.assertEqual(
        ctx.exception.message, "No signature was found with the name: nope"
    )

  def test_bad_record(self):
    self.write_records([regress_log().SerializeToString(), b"\xff\xff\xff"])
    with self.assertRaises(status.ServingError) as ctx:
      warmup.run_warmup(self.bundle, self.export_dir)
    self.assertStartsWith(
        ctx.exception.message, "Failed to parse warmup record"
    )

  def test_too_many_records(self):
    record = regress_log().SerializeToString()
    path = self.write_records([record] * (warmup.MAX_WARMUP_RECORDS + 1))
    with self.assertRaises(status.ServingError) as ctx:
      warmup.run_warmup(self.bundle, self.export_dir)
    self.assertEqual(
        ctx.exception.message,
        f"Number of warmup records exceeds the maximum (1000) at {path}",
    )


if __name__ == "__main__":
  absltest.main()
