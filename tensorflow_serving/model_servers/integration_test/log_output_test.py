"""What a CPU-only server logs: no ERROR line when nothing is wrong; JSON lines.

The real binary starts with TensorFlow's C++ logging fully on
(TF_CPP_MIN_LOG_LEVEL=0), once in absl's text format and once with
--log_format=json, serves a request and stops.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from absl.testing import absltest
import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two

# An ERROR line in absl's format, C++ (E0000 ...) or Python (E1207 ...).
_ERROR_LINE = re.compile(r"^[EF]\d{4} ")


class LogOutputTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = os.path.join(
        tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR")), "half"
    )
    half_plus_two.export_half_plus_two_tf1(os.path.join(cls.base, "1"))
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

  def serve_once(self, *args: str) -> str:
    with model_server.running_server(
        ["--model_name=half", f"--model_base_path={self.base}", *args],
        rest=False,
    ) as server:
      with server.channel() as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half"
        request.inputs["x"].CopyFrom(
            tensor_codec.ndarray_to_tensor_proto(np.asarray([1.0], np.float32))
        )
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30
        )
    return server.log()

  def test_text_start_has_no_error_lines(self):
    log = self.serve_once()
    self.assertEmpty(
        [line for line in log.splitlines() if _ERROR_LINE.match(line)], log
    )
    self.assertIn("Successfully loaded servable version", log)

  def test_json_lines(self):
    log = self.serve_once("--log_format=json")
    docs = [json.loads(line) for line in log.splitlines() if line[:1] == "{"]
    self.assertEmpty(
        [line for line in log.splitlines() if _ERROR_LINE.match(line)], log
    )
    self.assertNotEmpty(docs)
    for doc in docs:
      self.assertContainsSubset(
          {"time", "level", "message", "source"}, doc.keys()
      )
      self.assertNotIn(doc["level"], ("ERROR", "FATAL"), doc)
    loaded = [
        d
        for d in docs
        if d["message"].startswith("Successfully loaded servable version")
    ]
    self.assertLen(loaded, 1)
    self.assertEqual((loaded[0]["model"], loaded[0]["version"]), ("half", 1))
    self.assertTrue(
        any(d["message"].startswith("Running gRPC ModelServer") for d in docs)
    )


if __name__ == "__main__":
  absltest.main()
