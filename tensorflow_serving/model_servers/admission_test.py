"""Overload is refused early with a retry hint, not queued to time out.

The rule on a fake clock first; then the REST engine, handler and pipeline
in process over a model slowed to 100 ms a run on one worker thread (or
behind one batch queue): at many times its capacity, what cannot finish
within the REST deadline is answered 503 with Retry-After at once, and what
is admitted finishes in time (no 504). gRPC's refusal carries
grpc-retry-pushback-ms. The worker pool's queue is bounded too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import threading
import time
from typing import Any

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.model_servers import admission
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers import rest_server
from tensorflow_serving.test_util import in_process
from tensorflow_serving.util import status

RUN_S = 0.1
REST_TIMEOUT_S = 2.0


class FakeClock:

  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


class AdmissionRuleTest(absltest.TestCase):

  def measured(self, **kwargs) -> tuple[admission.Admission, FakeClock]:
    """An Admission that has seen 4 runs of 0.1 s, one at a time."""
    clock = FakeClock()
    gate = admission.Admission(clock=clock, **kwargs)
    for _ in range(4):
      admitted = gate.admit(None)
      clock.now += 0.1
      gate.finished(admitted, 0)
    self.assertAlmostEqual(gate.cost_s, 0.1)
    self.assertAlmostEqual(gate.service_s, 0.1)
    return gate, clock

  def test_nothing_is_refused_before_anything_is_measured(self):
    gate = admission.Admission(clock=FakeClock())
    for _ in range(100):
      gate.admit(deadline=0.0)  # Long past, but nothing is known yet.
    self.assertEqual(gate.pending, 100)

  def test_a_run_that_cannot_meet_its_deadline_is_refused(self):
    gate, clock = self.measured()
    for _ in range(5):
      gate.admit(None)
    # 0.1 s of service plus 5 runs ahead at 0.1 s: 0.6 s, more than the
    # headroom leaves of 0.74 s.
    with self.assertRaises(status.ServingError) as refused:
      gate.admit(clock.now + 0.74)
    self.assertEqual(refused.exception.code, status.Code.UNAVAILABLE)
    self.assertIn("Server overloaded", refused.exception.message)
    self.assertIn("5 model runs ahead", refused.exception.message)
    self.assertAlmostEqual(refused.exception.retry_after_s, 0.5)
    self.assertEqual(gate.shed, 1)
    gate.admit(clock.now + 0.76)
    self.assertEqual(gate.pending, 6)

  def test_check_refuses_as_admit_would_without_admitting(self):
    gate, clock = self.measured()
    for _ in range(5):
      gate.admit(None)
    with self.assertRaises(status.ServingError):
      gate.check(clock.now + 0.74)
    gate.check(clock.now + 0.76)
    gate.check(None)
    self.assertEqual((gate.pending, gate.shed), (5, 1))

  def test_no_deadline_or_nothing_queued_is_never_refused(self):
    gate, clock = self.measured(min_pending_to_shed=3)
    gate.admit(None)
    gate.admit(clock.now + 0.001)  # One ahead: it would start at once.
    gate.admit(clock.now + 0.001)
    for _ in range(50):
      gate.admit(None)
    self.assertEqual(gate.shed, 0)
    with self.assertRaises(status.ServingError):
      gate.admit(clock.now + 0.001)

  def test_without_shedding_by_deadline_only_max_pending_refuses(self):
    gate, clock = self.measured(shed_by_deadline=False, max_pending=10)
    for _ in range(10):
      gate.admit(clock.now + 0.001)  # Cannot finish in time; queued.
    self.assertEqual((gate.pending, gate.shed), (10, 0))
    with self.assertRaises(status.ServingError) as refused:
      gate.admit(clock.now + 10.0)
    self.assertIn("--max_pending_requests", refused.exception.message)

  def test_max_pending_bounds_the_queue_without_deadlines(self):
    gate = admission.Admission(max_pending=3, clock=FakeClock())
    for _ in range(3):
      gate.admit(None)
    with self.assertRaises(status.ServingError) as refused:
      gate.admit(None)
    self.assertEqual(refused.exception.code, status.Code.UNAVAILABLE)
    self.assertIn("--max_pending_requests", refused.exception.message)
    self.assertEqual(refused.exception.retry_after_s, 1.0)

  def test_cost_is_capacity_when_runs_overlap(self):
    clock = FakeClock()
    gate = admission.Admission(clock=clock)
    # Four runs at once, each 0.4 s: one finished run per 0.1 s of capacity.
    for _ in range(8):
      admitted = [gate.admit(None) for _ in range(4)]
      clock.now += 0.4
      for at in admitted:
        gate.finished(at, 0)
    self.assertAlmostEqual(gate.cost_s, 0.1)

  def test_hints(self):
    self.assertEqual(admission.retry_after_header(0.01), "1")
    self.assertEqual(admission.retry_after_header(2.1), "3")
    self.assertEqual(admission.retry_pushback_ms(0.0001), "1")
    self.assertEqual(admission.retry_pushback_ms(0.25), "250")


class WorkerPoolBoundTest(absltest.TestCase):

  def test_calls_past_max_pending_are_refused(self):
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self.addCleanup(executor.shutdown)
    runner = model_runner.ModelRunner(
        executor, admission.Admission(max_pending=2)
    )
    release = threading.Event()

    async def main():
      held = [
          asyncio.ensure_future(runner.call(release.wait, 10)) for _ in range(2)
      ]
      await asyncio.sleep(0)  # Both are pending on the pool now.
      with self.assertRaises(status.ServingError) as refused:
        await runner.call(time.sleep, 0)
      release.set()
      await asyncio.gather(*held)
      await runner.call(time.sleep, 0)  # Room again.
      return refused.exception

    refused = asyncio.run(main())
    self.assertEqual(refused.code, status.Code.UNAVAILABLE)
    self.assertIn("worker pool", refused.message)
    self.assertEqual(refused.retry_after_s, admission.DEFAULT_RETRY_S)


class _SlowBundle:
  """half_plus_two, RUN_S slower per run (sleeping, so CPU load matters less)."""

  def __init__(self, inner: Any):
    self._inner = inner
    self.signatures = inner.signatures
    self.runtime = inner.runtime

  def run(self, sig, inputs, output_filter=()):
    time.sleep(RUN_S)
    return self._inner.run(sig, inputs, output_filter)


class _SlowQueuedBundle(_SlowBundle):
  """The same behind a queue and thread of its own, as a batching bundle
  (`submit`, one request a batch), so runs go the batcher's way."""

  def __init__(self, inner: Any, queue: concurrent.futures.Executor):
    super().__init__(inner)
    self._queue = queue

  def submit(self, sig, inputs, output_filter=()):
    return self._queue.submit(self.run, sig, inputs, output_filter)


class _SlowModelTestCase(in_process.HalfPlusTwoTestCase):
  """The slowed model on one worker thread (or one batch queue)."""

  batched = False

  def setUp(self):
    super().setUp()
    self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    self.addCleanup(self.executor.shutdown)
    self.runner = model_runner.ModelRunner(
        self.executor, admission.Admission(min_pending_to_shed=1)
    )
    bundle = _SlowBundle(self.bundle)
    if self.batched:
      queue = concurrent.futures.ThreadPoolExecutor(max_workers=1)
      self.addCleanup(queue.shutdown)
      bundle = _SlowQueuedBundle(self.bundle, queue)
    core = in_process.FakeCore({"slow": (1, bundle)})
    self.pipeline = pipeline_lib.Pipeline(core, self.runner)

  def serve_rest(self) -> int:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    options = rest_server.HttpOptions(timeout_s=REST_TIMEOUT_S)
    server = rest_server.make_server(
        rest_server.make_app(
            http_rest_api_handler.HttpRestApiHandler(self.pipeline), options
        ),
        0,
        options,
        host="127.0.0.1",
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

    def stop():
      asyncio.run_coroutine_threadsafe(server.stop(5), loop).result(10)
      loop.call_soon_threadsafe(loop.stop)
      thread.join(10)
      loop.close()

    self.addCleanup(stop)
    return server.port


class OverloadTest(_SlowModelTestCase):
  """Unbatched: runs go to the worker pool."""

  def test_rest_overload_is_503_with_retry_after_not_504(self):
    port = self.serve_rest()

    def predict() -> tuple[int, dict, dict, float]:
      conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
      try:
        started = time.monotonic()
        conn.request(
            "POST", "/v1/models/slow:predict", body=b'{"instances": [2.0]}'
        )
        reply = conn.getresponse()
        body = json.loads(reply.read())
        headers = {k.lower(): v for k, v in reply.getheaders()}
        return reply.status, body, headers, time.monotonic() - started
      finally:
        conn.close()

    # Measures the capacity, 0.1 s a run, over a few windows (the first
    # run, slower, is in the first only).
    for _ in range(10):
      self.assertEqual(predict()[0], 200)
    # 40 at once: 4 s of work for a 2 s deadline.
    with concurrent.futures.ThreadPoolExecutor(40) as clients:
      results = list(clients.map(lambda _: predict(), range(40)))
    by_status: dict[int, list] = {}
    for result in results:
      by_status.setdefault(result[0], []).append(result)
    self.assertEqual(set(by_status), {200, 503}, [r[:2] for r in results])
    answered, refused = by_status[200], by_status[503]
    print(
        f"{len(answered)} answered (slowest {max(r[3] for r in answered):.2f}"
        f" s), {len(refused)} refused (slowest "
        f"{max(r[3] for r in refused):.2f} s)",
        flush=True,
    )
    # Up to 2 s of runs fit the deadline (1.6 s with the headroom); the
    # rest are refused.
    self.assertBetween(len(answered), 10, 20)
    for _, body, _, took in answered:
      self.assertEqual(body, {"predictions": [3.0]})
      self.assertLess(took, REST_TIMEOUT_S)
    for _, body, headers, took in refused:
      self.assertIn("Server overloaded", body["error"])
      self.assertGreaterEqual(int(headers["retry-after"]), 1)
      # Early: long before the deadline it could not meet.
      self.assertLess(took, REST_TIMEOUT_S / 2)
    self.assertEqual(self.runner.admission.shed, len(refused))
    # Once the queue drains, requests are admitted again.
    self.assertEqual(predict()[0], 200)

  def test_grpc_refusal_carries_retry_pushback(self):
    self.runner.admission.max_pending = 0  # Every run is one too many.
    servicer = grpc_services.PredictionService(self.pipeline)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "slow"
    request.inputs["x"].dtype = 1
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    context = in_process.FakeContext(timeout_s=5.0)
    with self.assertRaises(in_process.AbortError) as aborted:
      in_process.run(servicer.Predict(request, context))
    self.assertEqual(aborted.exception.code, grpc.StatusCode.UNAVAILABLE)
    self.assertIn("--max_pending_requests", aborted.exception.details)
    self.assertEqual(
        context.trailing_metadata, (("grpc-retry-pushback-ms", "1000"),)
    )


class V2RefusalTest(_SlowModelTestCase):
  """The Open Inference Protocol's infer is refused the same way."""

  def test_v2_rest_infer_refusal_is_503_with_retry_after(self):
    self.runner.admission.max_pending = 0  # Every run is one too many.
    handler = http_rest_api_handler.HttpRestApiHandler(self.pipeline)
    body = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1], "datatype": "FP32", "data": [2.0]}
            ]
        }
    ).encode()
    response = in_process.run(
        handler.handle("POST", "/v2/models/slow/infer", body)
    )
    self.assertEqual(response.status, 503, response.body)
    self.assertIn(b"Server overloaded", response.body)
    self.assertEqual(response.headers, b"Retry-After: 1\r\n")
    # Room again: the same request is answered.
    self.runner.admission.max_pending = 10
    response = in_process.run(
        handler.handle("POST", "/v2/models/slow/infer", body)
    )
    self.assertEqual(response.status, 200, response.body)


class BatchedOverloadTest(OverloadTest):
  """Batched: runs are handed to the batcher's queue (`submit`)."""

  batched = True


if __name__ == "__main__":
  absltest.main()
