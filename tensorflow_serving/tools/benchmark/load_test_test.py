"""Tests the load generator's statistics, checks and clients (on fakes)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from typing import Any
from unittest import mock

from absl.testing import absltest
from aiohttp import web
import numpy as np

from tensorflow_serving.tools.benchmark import load_test
from tensorflow_serving.tools.benchmark import loadgen
from tensorflow_serving.tools.benchmark import wire


class PercentileTest(absltest.TestCase):

  def test_nearest_rank(self):
    values = list(range(1, 101))  # 1..100
    self.assertEqual(loadgen.percentile(values, 50), 50)
    self.assertEqual(loadgen.percentile(values, 90), 90)
    self.assertEqual(loadgen.percentile(values, 99), 99)
    self.assertEqual(loadgen.percentile(values, 100), 100)
    self.assertEqual(loadgen.percentile(values, 0), 1)

  def test_is_always_an_observed_value(self):
    values = [0.001, 0.002, 0.010]
    self.assertEqual(loadgen.percentile(values, 50), 0.002)
    self.assertEqual(loadgen.percentile(values, 99), 0.010)
    self.assertEqual(loadgen.percentile([7.0], 1), 7.0)
    self.assertEqual(loadgen.percentile([7.0], 99.9), 7.0)

  def test_rejects_bad_input(self):
    with self.assertRaises(ValueError):
      loadgen.percentile([], 50)
    with self.assertRaises(ValueError):
      loadgen.percentile([1.0], 101)


class AggregateTest(absltest.TestCase):

  def test_merges_workers(self):
    a = loadgen.WorkerResult(
        latencies_s=[0.001] * 90,
        errors={"UNAVAILABLE": 2},
        elapsed_s=1.0,
        cpu_s=0.25,
        server_cpu_s=1.5,
    )
    b = loadgen.WorkerResult(
        latencies_s=[0.010] * 10,
        errors={"UNAVAILABLE": 1, "malformed": 1},
        elapsed_s=2.0,
        cpu_s=0.5,
    )
    s = loadgen.aggregate([a, b])
    self.assertEqual(s["ok"], 100)
    self.assertEqual(s["errors"], 4)
    self.assertEqual(s["requests"], 104)
    self.assertEqual(s["errors_by_status"], {"UNAVAILABLE": 3, "malformed": 1})
    # Overlapping windows: rates add up (90/1 s + 10/2 s).
    self.assertAlmostEqual(s["throughput_rps"], 95.0)
    self.assertEqual(s["elapsed_s"], 2.0)
    self.assertAlmostEqual(s["latency_ms"]["p50"], 1.0)
    self.assertAlmostEqual(s["latency_ms"]["p90"], 1.0)
    self.assertAlmostEqual(s["latency_ms"]["p99"], 10.0)
    self.assertAlmostEqual(s["latency_ms"]["max"], 10.0)
    self.assertAlmostEqual(s["latency_ms"]["mean"], 1.9)
    self.assertAlmostEqual(s["loadgen_cpu_pct"], 37.5)
    self.assertAlmostEqual(s["loadgen_cpu_us_per_request"], 1e6 * 0.75 / 104)
    self.assertAlmostEqual(s["server_cpu_pct"], 75.0)

  def test_no_successes(self):
    s = loadgen.aggregate([loadgen.WorkerResult([], {"HTTP 500": 3}, 1.0, 0.1)])
    self.assertIsNone(s["latency_ms"])
    self.assertEqual(s["throughput_rps"], 0)
    self.assertIsNone(s["server_cpu_pct"])


class WindowTest(absltest.TestCase):

  def test_counts_only_requests_inside_the_window(self):

    async def scenario() -> loadgen.WorkerResult:
      window = loadgen.Window(duration_s=0, max_requests=3, server_pid=0)
      window.record(0.0, 0.1, None)  # before open: warmup
      window.open()
      start = window.start
      window.record(start - 0.01, start + 0.01, None)  # sent during warmup
      window.record(start + 0.1, start + 0.2, None)
      window.record(start + 0.2, start + 0.3, "UNAVAILABLE")
      self.assertFalse(window.stopping)
      window.record(start + 0.3, start + 0.5, None)  # third: closes
      self.assertTrue(window.stopping)
      window.record(start + 0.4, start + 0.6, None)  # after close
      return window.result()

    result = asyncio.run(scenario())
    self.assertLen(result.latencies_s, 2)
    self.assertAlmostEqual(result.latencies_s[0], 0.1)
    self.assertEqual(result.errors, {"UNAVAILABLE": 1})

  def test_share(self):
    self.assertEqual([loadgen._share(10, 3, i) for i in range(3)], [4, 3, 3])
    self.assertEqual(loadgen._share(0, 3, 1), 0)
    config = loadgen.Config(server="h:1", concurrency=5, processes=2)
    self.assertEqual([config.streams_of(w) for w in range(2)], [3, 2])


class ConfigTest(absltest.TestCase):

  def test_validate(self):
    loadgen.Config(server="h:1").validate()
    for bad in (
        dict(protocol="soap"),
        dict(concurrency=0),
        dict(concurrency=2, processes=3),
        dict(duration_s=0, max_requests=0),
        dict(protocol="rest", rest_client="wrk", check=True),
    ):
      with self.subTest(bad=bad), self.assertRaises(ValueError):
        loadgen.Config(server="h:1", **bad).validate()


class CheckerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.expected = np.eye(10, dtype=np.float32)[:3]  # image i -> digit i

  def _grpc(self, scores) -> bytes:
    tensor = wire.encode_float_tensor(np.asarray(scores, np.float32)[None])
    entry = b"\x0a\x06scores\x12" + bytes([len(tensor)]) + tensor
    return b"\x0a" + bytes([len(entry)]) + entry

  def _rest(self, scores) -> bytes:
    return json.dumps({"predictions": [list(map(float, scores))]}).encode()

  def test_shape_only(self):
    workload = loadgen.Workload([b""] * 3, None)
    checker = loadgen.Checker(loadgen.Config(server="h:1"), workload)
    self.assertIsNone(checker.grpc(0, self._grpc(self.expected[1])))
    self.assertEqual(checker.grpc(0, self._grpc([1.0] * 9)), "malformed")
    self.assertEqual(checker.grpc(0, b"\xff"), "malformed")
    self.assertIsNone(checker.rest(0, self._rest(self.expected[1])))
    self.assertEqual(checker.rest(0, b'{"predictions": [[1, 2]]}'), "malformed")
    self.assertEqual(checker.rest(0, b'{"error": "x"}'), "malformed")
    self.assertEqual(checker.rest(0, b"not json"), "malformed")

  def test_against_expected_scores(self):
    workload = loadgen.Workload([b""] * 3, self.expected)
    checker = loadgen.Checker(
        loadgen.Config(server="h:1", check=True), workload
    )
    self.assertIsNone(checker.grpc(2, self._grpc(self.expected[2])))
    self.assertEqual(
        checker.grpc(2, self._grpc(self.expected[1])), "wrong_answer"
    )
    self.assertIsNone(checker.rest(1, self._rest(self.expected[1] + 1e-6)))
    self.assertEqual(
        checker.rest(1, self._rest(self.expected[1] + 0.01)), "wrong_answer"
    )

  def test_learns_first_answers(self):
    workload = loadgen.Workload([b""] * 3, None)
    checker = loadgen.Checker(
        loadgen.Config(server="h:1", check=True), workload
    )
    self.assertIsNone(checker.grpc(0, self._grpc(self.expected[2])))
    self.assertIsNone(checker.grpc(0, self._grpc(self.expected[2])))
    self.assertEqual(
        checker.grpc(0, self._grpc(self.expected[0])), "wrong_answer"
    )


def _scores_for(image: np.ndarray) -> np.ndarray:
  """What the fake servers answer: a deterministic function of the image."""
  return np.linspace(0, 1, 10, dtype=np.float32) * float(image.sum())


class _FakeServers:
  """A REST and a gRPC Predict endpoint on one background event loop."""

  def __init__(self, fail_every: int = 0):
    self.fail_every = fail_every
    self.close_every = 0
    self.delay_s = 0.0
    self.calls = 0
    self.loop = asyncio.new_event_loop()
    self.ready = threading.Event()
    self.thread = threading.Thread(target=self._run, daemon=True)
    self.thread.start()
    self.ready.wait(30)

  def _maybe_fail(self) -> bool:
    self.calls += 1
    return bool(self.fail_every) and self.calls % self.fail_every == 0

  def _run(self) -> None:
    asyncio.set_event_loop(self.loop)
    self.loop.run_until_complete(self._start())
    self.ready.set()
    self.loop.run_forever()

  async def _start(self) -> None:
    import grpc  # pylint: disable=g-import-not-at-top

    async def rest(request: web.Request) -> web.Response:
      await asyncio.sleep(self.delay_s)
      if self._maybe_fail():
        return web.json_response({"error": "boom"}, status=500)
      body = await request.json()
      image = np.asarray(body["instances"][0], np.float32)
      response = web.json_response(
          {"predictions": [_scores_for(image).tolist()]}
      )
      if self.close_every and self.calls % self.close_every == 0:
        response.force_close()  # Connection: close, then hang up.
      return response

    app = web.Application()
    app.router.add_post("/v1/models/mnist:predict", rest)
    self.runner = web.AppRunner(app, access_log=None)
    await self.runner.setup()
    site = web.TCPSite(self.runner, "127.0.0.1", 0)
    await site.start()
    self.rest_port = site._server.sockets[0].getsockname()[1]

    async def predict(raw: bytes, context: Any) -> bytes:
      await asyncio.sleep(self.delay_s)
      if self._maybe_fail():
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "full")
      # The request's only tensor_content is the image.
      start = raw.index(b"\x22\xc0\x18") + 3  # field 4, 3136 bytes
      image = np.frombuffer(raw[start : start + 3136], "<f4")
      tensor = wire.encode_float_tensor(_scores_for(image)[None])
      entry = b"\x0a\x06scores\x12" + bytes([len(tensor)]) + tensor
      return b"\x0a" + bytes([len(entry)]) + entry

    self.grpc_server = grpc.aio.server()
    self.grpc_server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService",
                {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
            ),
        )
    )
    self.grpc_port = self.grpc_server.add_insecure_port("127.0.0.1:0")
    await self.grpc_server.start()

  def stop(self) -> None:

    async def shutdown() -> None:
      await self.grpc_server.stop(None)
      await self.runner.cleanup()

    asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(30)
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(30)


class ClientsTest(absltest.TestCase):
  """Each client against fake servers: counts, checks and error statuses."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.images = np.random.RandomState(0).rand(20, 784).astype(np.float32)
    cls.expected = np.stack([_scores_for(image) for image in cls.images])

  def setUp(self):
    super().setUp()
    self.enter_context(
        mock.patch.object(loadgen, "load_images", lambda config: self.images)
    )
    self.servers = _FakeServers()
    self.addCleanup(self.servers.stop)
    self.expected_path = self.create_tempfile("expected.npy").full_path
    np.save(self.expected_path, self.expected)

  def _config(self, protocol: str, **kwargs) -> loadgen.Config:
    port = (
        self.servers.grpc_port if protocol == "grpc" else self.servers.rest_port
    )
    defaults = dict(
        server=f"127.0.0.1:{port}",
        protocol=protocol,
        concurrency=4,
        duration_s=0,
        warmup_s=0,
        max_requests=60,
        check=True,
        expected_scores=self.expected_path,
    )
    defaults.update(kwargs)
    return loadgen.Config(**defaults)

  def test_every_client_answers_and_checks(self):
    for protocol, client in (
        ("grpc", dict(grpc_client="raw")),
        ("grpc", dict(grpc_client="aio")),
        ("rest", dict(rest_client="raw")),
        ("rest", dict(rest_client="aiohttp")),
    ):
      with self.subTest(protocol=protocol, **client):
        summary = loadgen.run(self._config(protocol, **client))
        self.assertEqual(summary["errors"], 0, summary["errors_by_status"])
        self.assertEqual(summary["ok"], 60)
        self.assertGreater(summary["throughput_rps"], 0)
        self.assertGreater(summary["latency_ms"]["p99"], 0)
        text = load_test.format_summary(summary)
        self.assertIn("60 ok, 0 errors", text)

  def test_wrong_expectations_are_reported(self):
    np.save(self.expected_path, self.expected[::-1])
    summary = loadgen.run(self._config("grpc"))
    self.assertEqual(summary["errors_by_status"], {"wrong_answer": 60})

  def test_errors_are_counted_by_status(self):
    self.servers.fail_every = 3
    grpc_summary = loadgen.run(self._config("grpc", max_requests=30))
    self.assertEqual(
        grpc_summary["errors_by_status"], {"RESOURCE_EXHAUSTED": 10}
    )
    self.assertEqual(grpc_summary["ok"], 20)
    self.servers.calls = 0
    rest_summary = loadgen.run(self._config("rest", max_requests=30))
    self.assertEqual(rest_summary["errors_by_status"], {"HTTP 500": 10})

  def test_rest_reconnects_when_the_server_closes(self):
    self.servers.close_every = 7
    summary = loadgen.run(self._config("rest"))
    self.assertEqual(summary["errors"], 0, summary["errors_by_status"])
    self.assertEqual(summary["ok"], 60)

  def test_slow_answers_time_out(self):
    # aiohttp logs each request the client gave up on.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    self.servers.delay_s = 5.0
    for protocol in ("grpc", "rest"):
      with self.subTest(protocol=protocol):
        summary = loadgen.run(
            self._config(
                protocol,
                concurrency=2,
                duration_s=1.2,
                max_requests=0,
                timeout_s=0.3,
            )
        )
        self.assertEqual(summary["ok"], 0)
        self.assertGreater(summary["errors"], 0)
        self.assertEqual(
            list(summary["errors_by_status"]),
            ["DEADLINE_EXCEEDED" if protocol == "grpc" else "TimeoutError"],
        )

  def test_unreachable_server_raises(self):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    for protocol in ("grpc", "rest"):
      with self.subTest(protocol=protocol):
        with self.assertRaises(ConnectionError):
          loadgen.run(
              loadgen.Config(
                  server=f"127.0.0.1:{port}",
                  protocol=protocol,
                  concurrency=2,
                  duration_s=0.3,
                  warmup_s=0,
                  timeout_s=2,
              )
          )

  def test_wrk(self):
    summary = loadgen.run(
        self._config(
            "rest",
            rest_client="wrk",
            check=False,
            expected_scores="",
            max_requests=0,
            duration_s=1,
        )
    )
    self.assertEqual(summary["errors"], 0, summary["errors_by_status"])
    self.assertGreater(summary["ok"], 0)
    self.servers.fail_every = 2
    summary = loadgen.run(
        self._config(
            "rest",
            rest_client="wrk",
            check=False,
            expected_scores="",
            max_requests=0,
            duration_s=1,
        )
    )
    self.assertGreater(summary["errors_by_status"]["HTTP non-2xx"], 0)


if __name__ == "__main__":
  absltest.main()
