"""The request-log tool's pieces: reading, summary, warmup sample, replay calls."""

from __future__ import annotations

import json
import os
import tempfile

from absl.testing import absltest
import numpy as np

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.tools.request_log import log_files
from tensorflow_serving.tools.request_log import replay
from tensorflow_serving.tools.request_log import warmup_file


def predict_log(x, signature="serving_default", version=3, alias="x"):
  log = prediction_log_pb2.PredictionLog()
  log.log_metadata.model_spec.name = "m"
  log.log_metadata.model_spec.version.value = version
  log.log_metadata.model_spec.signature_name = signature
  request = log.predict_log.request
  request.model_spec.name = "m"
  request.model_spec.version.value = version
  request.model_spec.signature_name = signature
  request.inputs[alias].CopyFrom(
      tensor_codec.ndarray_to_tensor_proto(np.asarray(x))
  )
  log.predict_log.response.model_spec.name = "m"
  return log


def regress_log():
  log = prediction_log_pb2.PredictionLog()
  log.log_metadata.model_spec.name = "m"
  request = log.regress_log.request
  request.model_spec.name = "m"
  request.model_spec.signature_name = "regress"
  example = request.input.example_list.examples.add()
  example.features.feature["x"].float_list.value.append(2.0)
  example.features.feature["s"].bytes_list.value.append(b"\xff")
  return log


def multi_log():
  log = prediction_log_pb2.PredictionLog()
  log.multi_inference_log.request.tasks.add().model_spec.name = "m"
  return log


class ToolTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))

  def write(self, name: str, logs) -> str:
    path = os.path.join(self.dir, name)
    with open(path, "wb") as f:
      for log in logs:
        f.write(tfrecord_log_collector.frame(log.SerializeToString()))
    return path

  def test_summary_counts_shapes_and_errors(self):
    self.write("a.tfrecord", [predict_log([1.0, 2.0]), predict_log([[1]])])
    no_response = predict_log([1.0])
    no_response.predict_log.ClearField("response")
    self.write("b.tfrecord", [no_response])
    with open(os.path.join(self.dir, "c.tfrecord"), "wb") as f:
      f.write(b"\x05" + b"\x00" * 11 + b"garbage!!")  # Bad length CRC.
    errors = log_files.ReadErrors()
    summary = log_files.summarize(
        log_files.read(log_files.expand([self.dir]), errors)
    )
    self.assertEqual(summary["requests"], 3)
    self.assertEqual(summary["without_response"], 1)
    self.assertEqual(dict(errors.counts), {"unreadable_file": 1})
    (group,) = summary["groups"]
    self.assertEqual(
        group["inputs"],
        {"x:double[2]": 1, "x:int64[1,1]": 1, "x:double[1]": 1},
    )
    text = log_files.format_summary(summary, errors)
    self.assertIn("m v3 serving_default predict_log: 3", text)
    self.assertIn("errors: 2", text)

  def test_warmup_sample_keeps_requests_without_version_in_order(self):
    logs = [predict_log([float(i)]) for i in range(50)] + [multi_log()]
    records = warmup_file.sample(logs, 10, seed=1)
    self.assertLen(records, 10)
    values = [
        tensor_codec.tensor_proto_to_ndarray(r.predict_log.request.inputs["x"])[
            0
        ]
        for r in records
    ]
    self.assertEqual(values, sorted(values))
    for record in records:
      self.assertFalse(record.predict_log.HasField("response"))
      self.assertIsNone(
          record.predict_log.request.model_spec.WhichOneof("version_choice")
      )
    self.assertEqual(
        warmup_file.sample(logs, 10, seed=1), records
    )  # Deterministic for a seed.
    self.assertEmpty(warmup_file.sample(logs, 10, signature="other"))
    path = warmup_file.write(records, self.dir)
    self.assertEqual(
        path,
        os.path.join(self.dir, "assets.extra", "tf_serving_warmup_requests"),
    )
    self.assertLen(list(tfrecord_log_collector.read_records(path)), 10)

  def test_rest_calls(self):
    logs = [
        predict_log(np.asarray([b"abc"], dtype=object), alias="text"),
        predict_log(np.asarray([b"\x00\x01"], dtype=object), alias="img_bytes"),
        regress_log(),
        multi_log(),
    ]
    calls, skipped = replay.calls_from_logs(logs, "rest", model_name="n")
    self.assertEqual(dict(skipped), {"multi_inference_log: no REST API": 1})
    self.assertEqual(
        [c.path for c in calls],
        [
            "/v1/models/n:predict",
            "/v1/models/n:predict",
            "/v1/models/n:regress",
        ],
    )
    self.assertEqual(
        json.loads(calls[0].body),
        {"signature_name": "serving_default", "inputs": {"text": ["abc"]}},
    )
    self.assertEqual(
        json.loads(calls[1].body)["inputs"], {"img_bytes": [{"b64": "AAE="}]}
    )
    self.assertEqual(
        json.loads(calls[2].body),
        {
            "signature_name": "regress",
            "examples": [{"x": [2.0], "s": [{"b64": "/w=="}]}],
        },
    )
    kept, _ = replay.calls_from_logs(logs[:1], "rest", keep_version=True)
    self.assertEqual(kept[0].path, "/v1/models/m/versions/3:predict")

  def test_grpc_calls_carry_the_request(self):
    calls, skipped = replay.calls_from_logs(
        [predict_log([1.0]), multi_log()], "grpc"
    )
    self.assertEmpty(skipped)
    self.assertEqual(
        [c.path for c in calls],
        [
            "/tensorflow.serving.PredictionService/Predict",
            "/tensorflow.serving.PredictionService/MultiInference",
        ],
    )


if __name__ == "__main__":
  absltest.main()
