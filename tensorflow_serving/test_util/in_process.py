"""In-process fixtures for the servers' unit tests: a core, a pipeline.

`FakeCore` serves real bundles under fixed ids without the lifecycle
pipeline, so the gRPC servicers and the REST handler can be tested in
seconds without a subprocess; ServerCore itself is tested over fake loaders
in server_core_test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from typing import Any

from absl.testing import absltest

from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.core import request_log_writer
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id
from tensorflow_serving.core import server_request_logger
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.model_servers import control_plane
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import model_view
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status


class FakeCore:
  """Serves `{name: (version, servable)}`; records each ModelSpec asked."""

  def __init__(self, servables: dict[str, tuple[int, Any]]):
    self._servables = servables
    self.specs: list[model_pb2.ModelSpec] = []
    self.config = model_server_config_pb2.ModelServerConfig()
    # As ServerCore's: a test calls request_logger.update to log a model.
    self.request_logger = server_request_logger.ServerRequestLogger(
        request_log_writer.RequestLogWriter(
            request_log_writer.QueueOptions(), metrics.record_request_log
        ),
        {
            tfrecord_log_collector.TYPE: tfrecord_log_collector.factory(
                tfrecord_log_collector.RotationOptions()
            )
        },
    )
    for name in servables:
      self.config.model_config_list.config.add(
          name=name, base_path=f"/models/{name}", model_platform="tensorflow"
      )

  def get_servable_handle(
      self, model_spec: model_pb2.ModelSpec
  ) -> servable_handle.ServableHandle:
    self.specs.append(model_spec)
    entry = self._servables.get(model_spec.name)
    if entry is None:
      raise status.not_found(
          f"Servable not found for request: Latest({model_spec.name})"
      )
    version, servable = entry
    return servable_handle.ServableHandle(
        servable_id.ServableId(model_spec.name, version), servable
    )


class HalfPlusTwoTestCase(absltest.TestCase):
  """Loads the two half_plus_two bundles once per class; fresh metrics per test.

  `bundle` serves Predict, `examples` Classify and Regress; a subclass builds
  its FakeCore over them in setUp (after calling this one).
  """

  bundle: Any
  examples: Any

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.bundle, cls.examples = half_plus_two_bundles()

  @classmethod
  def tearDownClass(cls):
    cls.bundle.close()
    cls.examples.close()
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()


def half_plus_two_bundles() -> tuple[Any, Any]:
  """Loaded half_plus_two (Predict) and example-signature (Classify, Regress)
  bundles, exported to a fresh temporary directory; the caller closes them."""
  tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
  predict = saved_model_bundle.load_saved_model_bundle(
      half_plus_two.export_half_plus_two_tf1(os.path.join(tmp, "half")),
      ["serve"],
  )
  examples = saved_model_bundle.load_saved_model_bundle(
      half_plus_two.export_example_signatures_tf1(os.path.join(tmp, "ex")),
      ["serve"],
  )
  return predict, examples


def make_pipeline(
    core: Any, management: control_plane.ModelManagement | None = None
) -> pipeline_lib.Pipeline:
  """A pipeline over `core`; `management` stands for the workers' view."""
  executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
  return pipeline_lib.Pipeline(
      core,
      model_runner.ModelRunner(executor),
      control_plane.ControlPlane(core, management),
      model_view.ModelView(core, management),
  )


class AbortError(Exception):
  """What FakeContext.abort raises: the call's gRPC status and details."""

  def __init__(self, code, details: str):
    super().__init__(f"{code}: {details}")
    self.code = code
    self.details = details


class FakeContext:
  """The bit of a grpc.aio ServicerContext the servicers use."""

  def __init__(self, timeout_s: float | None = None):
    self.code = None
    self.details = ""
    self.timeout_s = timeout_s
    self.trailing_metadata: tuple = ()

  def time_remaining(self) -> float | None:
    return self.timeout_s

  async def abort(self, code, details: str, trailing_metadata=()):
    self.trailing_metadata = tuple(trailing_metadata)
    raise AbortError(code, details)

  def set_code(self, code) -> None:
    self.code = code

  def set_details(self, details: str) -> None:
    self.details = details


def run(coroutine):
  return asyncio.run(coroutine)
