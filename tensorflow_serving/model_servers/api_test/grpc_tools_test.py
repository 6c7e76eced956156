"""What gRPC tools find on the gRPC port: the profiler and server reflection.

TensorBoard's "Capture profile" and `tf.profiler.experimental.client.trace`
trace a live server through TensorFlow's profiler service, and grpcurl,
Postman or grpcui discover the services through server reflection, as with
upstream's server. Each is used here through its own client library against
the real binary.
"""

from __future__ import annotations

import glob
import os
import tempfile
import threading
import unittest

from google.protobuf import descriptor_pool
import grpc
from grpc_reflection.v1alpha import proto_reflection_descriptor_database
from grpc_reflection.v1alpha import reflection_pb2
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tensorflow_serving.model_servers import profiler_protos
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
Code = grpc.StatusCode
MAX_TRACE_MS = 5000
SERVICES = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "inference.GRPCInferenceService",
    "tensorflow.ProfilerService",
    "tensorflow.serving.ModelService",
    "tensorflow.serving.PredictionService",
]


def _reflection_call(channel: grpc.Channel, version: str):
  return channel.stream_stream(
      f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
      request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
      response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
  )


class GrpcToolsTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    cls.server = cls.class_server(
        cls.repo,
        [
            "--model_name=half",
            f"--model_base_path={cls.repo.base_path(HALF, HALF)}",
            f"--profiler_max_duration_ms={MAX_TRACE_MS}",
        ],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def predict(self) -> None:
    response = self.clients.prediction.Predict(
        util.predict_request("half", {"x": np.array([2.0], np.float32)}),
        timeout=30,
    )
    self.assertEqual(list(response.outputs["y"].float_val), [3.0])

  # --- the profiler -------------------------------------------------------

  def trace_under_load(self, logdir: str, duration_ms: int) -> None:
    """Traces while requests run, as upstream's own server test does."""
    stop = threading.Event()
    errors = []

    def load():
      while not stop.is_set():
        try:
          self.predict()
        except Exception as exc:
          errors.append(exc)
          return

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
      tf.profiler.experimental.client.trace(
          f"grpc://{self.server.grpc_address}", logdir, duration_ms
      )
    finally:
      stop.set()
      thread.join(30)
    self.assertEqual(errors, [])

  def test_profiler_trace_writes_an_xspace_with_the_servers_events(self):
    logdir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.trace_under_load(logdir, 1000)
    files = glob.glob(
        os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")
    )
    self.assertEqual(len(files), 1, files)
    with open(files[0], "rb") as f:
      space = xplane_pb2.XSpace.FromString(f.read())
    events = sum(
        len(line.events) for plane in space.planes for line in plane.lines
    )
    self.assertGreater(events, 0)
    # TensorBoard needs the host plane, where TensorFlow's runs are traced.
    self.assertIn("/host:CPU", [plane.name for plane in space.planes])

  def profile_method(self):
    protos = profiler_protos.load()
    return protos, self.clients.channel.unary_unary(
        "/tensorflow.ProfilerService/Profile",
        request_serializer=protos.ProfileRequest.SerializeToString,
        response_deserializer=protos.ProfileResponse.FromString,
    )

  def test_profiler_refuses_a_trace_past_its_bound(self):
    protos, profile = self.profile_method()
    for request in (
        protos.ProfileRequest(duration_ms=MAX_TRACE_MS + 1),
        protos.ProfileRequest(opts={"duration_ms": MAX_TRACE_MS + 1}),
    ):
      error = self.assertRpcError(
          lambda r=request: profile(r, timeout=30), Code.INVALID_ARGUMENT
      )
      self.assertIn("--profiler_max_duration_ms", error.details())
    self.predict()  # and the server serves on

  def test_profiler_takes_one_trace_at_a_time(self):
    protos, profile = self.profile_method()
    first = profile.future(
        protos.ProfileRequest(duration_ms=MAX_TRACE_MS), timeout=60
    )
    threading.Event().wait(1.5)  # the first is tracing by now
    # Another request while the first traces is refused at once, not queued.
    self.assertRpcError(
        lambda: profile(protos.ProfileRequest(duration_ms=10), timeout=30),
        Code.UNAVAILABLE,
        contains=["Another profiling session"],
    )
    self.assertFalse(first.done())
    first.result()  # the first one completes
    profile(protos.ProfileRequest(duration_ms=10), timeout=30)  # then free
    self.predict()

  # --- reflection ---------------------------------------------------------

  def test_reflection_v1alpha_lists_and_describes_the_services(self):
    database = (
        proto_reflection_descriptor_database.ProtoReflectionDescriptorDatabase(
            self.clients.channel
        )
    )
    self.assertEqual(sorted(database.get_services()), SERVICES)
    pool = descriptor_pool.DescriptorPool(database)
    prediction = pool.FindServiceByName("tensorflow.serving.PredictionService")
    self.assertEqual(
        sorted(m.name for m in prediction.methods),
        [
            "Classify",
            "GetModelMetadata",
            "MultiInference",
            "Predict",
            "Regress",
        ],
    )
    predict = prediction.methods_by_name["Predict"]
    self.assertEqual(
        predict.input_type.full_name, "tensorflow.serving.PredictRequest"
    )
    model = pool.FindServiceByName("tensorflow.serving.ModelService")
    self.assertEqual(
        sorted(m.name for m in model.methods),
        ["GetModelStatus", "HandleReloadConfigRequest"],
    )
    profiler = pool.FindServiceByName("tensorflow.ProfilerService")
    self.assertIn("Profile", [m.name for m in profiler.methods])

  def test_reflection_v1_answers_on_one_stream(self):
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="tensorflow.serving.PredictionService"
        ),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="no.such.Service"
        ),
    ]
    answers = list(
        _reflection_call(self.clients.channel, "v1")(iter(requests), timeout=30)
    )
    self.assertEqual(len(answers), 4)
    self.assertEqual(
        sorted(s.name for s in answers[0].list_services_response.service),
        SERVICES,
    )
    self.assertTrue(answers[1].file_descriptor_response.file_descriptor_proto)
    self.assertTrue(answers[2].file_descriptor_response.file_descriptor_proto)
    self.assertEqual(
        answers[3].error_response.error_code, Code.NOT_FOUND.value[0]
    )
    self.predict()


if __name__ == "__main__":
  unittest.main()
