"""The request pipeline's contract, in process over fake servables.

What every transport relies on: the servable a ModelSpec names is taken once
and released when the request ends (success, error or cancellation), the
signature lookup gives upstream's message for the API that asks, and each
request is counted exactly once under upstream's metric names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import concurrent.futures
import dataclasses
import threading
import time
import types

from absl.testing import absltest
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.core import servable_handle
from tensorflow_serving.core import servable_id
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

VERSION = 7


def _signature(
    key: str, method: str, inputs: Mapping[str, int], outputs: Mapping[str, int]
) -> signature_lib.Signature:
  proto = meta_graph_pb2.SignatureDef(method_name=method)
  for alias, dtype in inputs.items():
    proto.inputs[alias].name = f"{alias}:0"
    proto.inputs[alias].dtype = dtype
  for alias, dtype in outputs.items():
    proto.outputs[alias].name = f"{alias}:0"
    proto.outputs[alias].dtype = dtype
  return signature_lib.Signature.from_proto(key, proto)


_SIGNATURES = {
    "serving_default": _signature(
        "serving_default",
        signature_lib.PREDICT_METHOD_NAME,
        {"x": types_pb2.DT_FLOAT},
        {"y": types_pb2.DT_FLOAT, "z": types_pb2.DT_FLOAT},
    ),
    "classify": _signature(
        "classify",
        signature_lib.CLASSIFY_METHOD_NAME,
        {"inputs": types_pb2.DT_STRING},
        {"classes": types_pb2.DT_STRING, "scores": types_pb2.DT_FLOAT},
    ),
    "regress": _signature(
        "regress",
        signature_lib.REGRESS_METHOD_NAME,
        {"inputs": types_pb2.DT_STRING},
        {"outputs": types_pb2.DT_FLOAT},
    ),
}


class FakeServable:
  """Computes `y = x + 1` (Predict) or fixed per-example outputs (examples).

  A test can make `run` fail, or block until the test lets it go.
  """

  runtime = "TF1"

  def __init__(self):
    self.signatures = _SIGNATURES
    self.runs: list[tuple[str, tuple[str, ...]]] = []
    self.error: Exception | None = None
    self.gate: threading.Event | None = None
    self.started = threading.Event()

  def run(
      self,
      sig: signature_lib.Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str],
  ) -> dict[str, np.ndarray]:
    self.runs.append((sig.key, tuple(output_filter)))
    self.started.set()
    if self.gate is not None:
      self.gate.wait(timeout=10)
    if self.error is not None:
      raise self.error
    if sig.key == "serving_default":
      x = inputs["x"]
      return {"y": x + 1, "z": x * 0}
    n = len(inputs["inputs"])
    if sig.key == "classify":
      return {
          "classes": np.array([[b"a", b"b"]] * n, dtype=object),
          "scores": np.full((n, 2), 0.5, np.float32),
      }
    return {"outputs": np.arange(n, dtype=np.float32)}


class CountingCore:
  """A ServerCore stand-in that owns its handles and counts their releases."""

  def __init__(self, servable: FakeServable):
    self._servable = servable
    self.specs: list[model_pb2.ModelSpec] = []
    self.taken = 0
    self.released = 0
    self.handles: list[servable_handle.ServableHandle] = []
    # As ServerCore's: no model has a logging_config here.
    self.request_logger = types.SimpleNamespace(by_model={})

  def get_servable_handle(
      self, spec: model_pb2.ModelSpec
  ) -> servable_handle.ServableHandle:
    self.specs.append(spec)
    if spec.name != "m":
      raise status.not_found(
          f"Servable not found for request: Latest({spec.name})"
      )
    self.taken += 1
    handle = servable_handle.ServableHandle(
        servable_id.ServableId("m", VERSION), self._servable, owner=self
    )
    # Kept, so that a handle the pipeline forgot is not released by its
    # garbage-collection safety net and goes unnoticed.
    self.handles.append(handle)
    return handle

  def release_handle(self, handle: servable_handle.ServableHandle) -> None:
    if not handle.released:
      handle.released = True
      self.released += 1

  @property
  def held(self) -> int:
    return self.taken - self.released


@dataclasses.dataclass(frozen=True)
class Decoded:
  sig: signature_lib.Signature
  inputs: Mapping[str, np.ndarray]
  output_filter: Sequence[str] = ()


def _sample(name: str, **labels: str) -> float:
  value = metrics.get().registry.get_sample_value(
      metrics.prometheus_name(name), labels
  )
  return 0.0 if value is None else value


def request_count(code: str, model: str = "m") -> float:
  return _sample(
      "/tensorflow/serving/request_count_total", model_name=model, status=code
  )


def all_request_counts() -> float:
  total = 0.0
  for family in metrics.get().registry.collect():
    if family.name == metrics.prometheus_name(
        "/tensorflow/serving/request_count"
    ):
      total += sum(s.value for s in family.samples if s.name.endswith("_total"))
  return total


def latency_count(api: str, entrypoint: str) -> float:
  return _sample(
      "/tensorflow/serving/request_latency_count",
      model_name="m",
      API=api,
      entrypoint=entrypoint,
  )


def runtime_count(api: str) -> float:
  return _sample(
      "/tensorflow/serving/runtime_latency_count",
      model_name="m",
      API=api,
      runtime="TF1",
  )


def example_count() -> float:
  return _sample("/tensorflow/serving/request_example_counts_sum", model="m")


def spec(name: str = "m") -> model_pb2.ModelSpec:
  return model_pb2.ModelSpec(name=name)


def predict_decoder(signature: str = "", output_filter=()):
  def decode(lookup):
    sig = lookup(signature)
    return Decoded(sig, {"x": np.array([1.0, 2.0], np.float32)}, output_filter)

  return decode


def examples_decoder(signature: str, count: int = 3):
  def decode(lookup):
    return lookup(signature), np.array([b"e"] * count, dtype=object)

  return decode


class PipelineTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()
    self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    self.addCleanup(self.executor.shutdown, wait=True)
    self.servable = FakeServable()
    self.core = CountingCore(self.servable)

  def pipeline(self) -> pipeline_lib.Pipeline:
    return pipeline_lib.Pipeline(
        self.core,  # type: ignore[arg-type]
        model_runner.ModelRunner(self.executor),
    )

  def predict(self, decode, entrypoint=pipeline_lib.GRPC, off_loop=False):
    return asyncio.run(
        self.pipeline().predict(spec(), decode, entrypoint, off_loop)
    )

  def assert_error(self, call, code, message):
    with self.assertRaises(status.ServingError) as ctx:
      asyncio.run(call)
    self.assertEqual(ctx.exception.code, code)
    self.assertEqual(ctx.exception.message, message)

  # Resolution.

  def test_predict_resolves_the_default_signature_and_the_served_version(self):
    result = self.predict(predict_decoder("", output_filter=("y",)))
    self.assertEqual(result.id, servable_id.ServableId("m", VERSION))
    self.assertEqual(result.request.sig.key, "serving_default")
    np.testing.assert_array_equal(result.outputs["y"], [2.0, 3.0])
    self.assertEqual(self.servable.runs, [("serving_default", ("y",))])

  def test_the_handle_is_taken_once_however_often_the_decoder_looks_up(self):
    def decode(lookup):
      lookup("")
      lookup("serving_default")
      return predict_decoder()(lookup)

    self.predict(decode)
    self.assertEqual([s.name for s in self.core.specs], ["m"])
    self.assertEqual(self.core.taken, 1)

  def test_off_loop_decodes_on_a_worker_thread(self):
    threads = []

    def decode(lookup):
      threads.append(threading.current_thread())
      return predict_decoder()(lookup)

    self.predict(decode, off_loop=True)
    self.predict(decode, off_loop=False)
    self.assertIsNot(threads[0], threading.main_thread())
    self.assertIs(threads[1], threading.main_thread())

  def test_overload_is_refused_before_the_body_is_decoded(self):
    runner = model_runner.ModelRunner(self.executor)
    gate = runner.admission
    gate.cost_s = gate.service_s = 0.1  # As if measured: 0.1 s a run.
    gate.pending = 5  # 0.6 s of work ahead of the next run.
    decoded = []

    def decode(lookup):
      decoded.append(1)
      return predict_decoder()(lookup)

    pipeline = pipeline_lib.Pipeline(self.core, runner)  # type: ignore[arg-type]
    with self.assertRaises(status.ServingError) as refused:
      asyncio.run(
          pipeline.predict(
              spec(), decode, "GRPC", deadline=time.monotonic() + 0.5
          )
      )
    self.assertEqual(refused.exception.code, status.Code.UNAVAILABLE)
    self.assertEqual(decoded, [])
    self.assertEqual(self.core.released, self.core.taken)
    gate.pending = 0
    asyncio.run(
        pipeline.predict(
            spec(), decode, "GRPC", deadline=time.monotonic() + 0.5
        )
    )
    self.assertEqual(decoded, [1])

  # Upstream's messages, per API.

  def test_missing_model_is_not_found(self):
    self.assert_error(
        self.pipeline().predict(spec("nope"), predict_decoder(), "GRPC"),
        status.Code.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )
    self.assertEqual(request_count("NOT_FOUND", model="nope"), 1)

  def test_missing_signature_message_depends_on_the_api(self):
    p = self.pipeline()
    self.assert_error(
        p.predict(spec(), predict_decoder("bad"), pipeline_lib.GRPC),
        status.Code.FAILED_PRECONDITION,
        'Serving signature key "bad" not found.',
    )
    self.assert_error(
        p.predict(
            spec(),
            predict_decoder("bad"),
            pipeline_lib.REST,
            api=pipeline_lib.Api.PREDICT_JSON,
        ),
        status.Code.INVALID_ARGUMENT,
        'Serving signature name: "bad" not found in signature def',
    )
    # The API, not the transport's name, picks the words.
    self.assert_error(
        p.predict(spec(), predict_decoder("bad"), pipeline_lib.REST),
        status.Code.FAILED_PRECONDITION,
        'Serving signature key "bad" not found.',
    )
    for call in (p.classify, p.regress):
      self.assert_error(
          call(spec(), examples_decoder("bad"), pipeline_lib.GRPC),
          status.Code.INVALID_ARGUMENT,
          "No signature was found with the name: bad",
      )

  def test_classify_checks_the_signature_it_resolved(self):
    self.assert_error(
        self.pipeline().classify(
            spec(), examples_decoder("regress"), pipeline_lib.REST
        ),
        status.Code.INVALID_ARGUMENT,
        "Expected classification signature method_name to be "
        f"{signature_lib.CLASSIFY_METHOD_NAME}. Was: "
        f"{signature_lib.REGRESS_METHOD_NAME}",
    )
    self.assertEqual(self.servable.runs, [])
    self.assertEqual(self.core.held, 0)

  def test_multi_inference_without_tasks_is_invalid_and_takes_no_handle(self):
    self.assert_error(
        self.pipeline().multi_inference(inference_pb2.MultiInferenceRequest()),
        status.Code.INVALID_ARGUMENT,
        "MultiInferenceRequest must have at least one task",
    )
    self.assertEqual(self.core.specs, [])
    self.assertEqual(all_request_counts(), 0)

  # Metrics: once per request.

  def test_success_is_counted_once_with_its_latencies(self):
    self.predict(predict_decoder(), entrypoint=pipeline_lib.REST)
    self.assertEqual(request_count("OK"), 1)
    self.assertEqual(all_request_counts(), 1)
    self.assertEqual(latency_count("Predict", "REST"), 1)
    self.assertEqual(latency_count("Predict", "GRPC"), 0)
    self.assertEqual(runtime_count("Predict"), 1)

  def test_an_error_is_counted_once_under_its_code_without_latency(self):
    self.servable.error = status.invalid_argument("bad input")
    self.assert_error(
        self.pipeline().predict(spec(), predict_decoder(), "GRPC"),
        status.Code.INVALID_ARGUMENT,
        "bad input",
    )
    self.assertEqual(request_count("INVALID_ARGUMENT"), 1)
    self.assertEqual(all_request_counts(), 1)
    self.assertEqual(latency_count("Predict", "GRPC"), 0)

  def test_an_unexpected_exception_is_counted_as_internal(self):
    self.servable.error = RuntimeError("boom")
    with self.assertRaises(RuntimeError):
      self.predict(predict_decoder())
    self.assertEqual(request_count("INTERNAL"), 1)
    self.assertEqual(all_request_counts(), 1)

  def test_a_decode_error_before_lookup_is_counted_and_takes_no_handle(self):
    def decode(lookup):
      raise status.invalid_argument("JSON Parse error")

    self.assert_error(
        self.pipeline().predict(spec(), decode, "REST"),
        status.Code.INVALID_ARGUMENT,
        "JSON Parse error",
    )
    self.assertEqual(self.core.taken, 0)
    self.assertEqual(request_count("INVALID_ARGUMENT"), 1)

  def test_classify_and_regress_count_requests_and_examples_once(self):
    p = self.pipeline()
    classified = asyncio.run(
        p.classify(spec(), examples_decoder("classify", 3), pipeline_lib.GRPC)
    )
    regressed = asyncio.run(
        p.regress(spec(), examples_decoder("regress", 2), pipeline_lib.REST)
    )
    self.assertEqual(classified.sig.key, "classify")
    self.assertEqual(classified.classifications[0], [(b"a", 0.5), (b"b", 0.5)])
    self.assertLen(classified.classifications, 3)
    np.testing.assert_array_equal(regressed.values, [0.0, 1.0])
    self.assertEqual(request_count("OK"), 2)
    self.assertEqual(latency_count("Classify", "GRPC"), 1)
    self.assertEqual(latency_count("Regress", "REST"), 1)
    self.assertEqual(runtime_count("Classify"), 1)
    self.assertEqual(runtime_count("Regress"), 1)
    self.assertEqual(example_count(), 5)
    self.assertEqual(
        self.servable.runs,
        [("classify", ("classes", "scores")), ("regress", ("outputs",))],
    )

  # Handles released whatever the outcome.

  def test_the_handle_is_released_after_success(self):
    self.predict(predict_decoder())
    self.assertEqual(self.core.taken, 1)
    self.assertEqual(self.core.held, 0)

  def test_the_handle_is_released_after_a_decode_error_past_lookup(self):
    def decode(lookup):
      lookup("")
      raise status.invalid_argument("bad tensor")

    with self.assertRaises(status.ServingError):
      self.predict(decode, off_loop=True)
    self.assertEqual(self.core.taken, 1)
    self.assertEqual(self.core.held, 0)

  def test_the_handle_is_released_after_a_run_error(self):
    self.servable.error = status.resource_exhausted("queue full")
    with self.assertRaises(status.ServingError):
      self.predict(predict_decoder())
    self.assertEqual(self.core.taken, 1)
    self.assertEqual(self.core.held, 0)

  def test_a_cancelled_request_releases_its_handle_and_counts_once(self):
    self.servable.gate = threading.Event()
    held_during_run = []

    async def scenario():
      task = asyncio.create_task(
          self.pipeline().predict(spec(), predict_decoder(), "GRPC")
      )
      while not self.servable.started.is_set():
        await asyncio.sleep(0.001)
      held_during_run.append(self.core.held)
      task.cancel()  # A deadline, or the client went away.
      with self.assertRaises(asyncio.CancelledError):
        await task

    try:
      asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    finally:
      self.servable.gate.set()
    self.assertEqual(held_during_run, [1])
    self.assertEqual(self.core.held, 0)
    self.assertEqual(request_count("CANCELLED"), 1)
    self.assertEqual(all_request_counts(), 1)

  def test_multi_inference_releases_its_handle(self):
    request = inference_pb2.MultiInferenceRequest()
    request.tasks.add().model_spec.name = "m"
    with self.assertRaises(status.ServingError):
      # The fake's signatures lack the task's method; the error is the
      # servable's business, the release the pipeline's.
      asyncio.run(self.pipeline().multi_inference(request))
    self.assertEqual(self.core.taken, 1)
    self.assertEqual(self.core.held, 0)


if __name__ == "__main__":
  absltest.main()
