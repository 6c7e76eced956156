"""open_loop_gen.js's schedule and outcomes, and how its records are summed.

The generator runs against a stub HTTP/1.1 server on 127.0.0.1 that answers
by the call's body (200, 503 with and without Retry-After, 504, or too late
for the deadline), so every outcome is checked with no timing assertion:
the stub's slow answer is many deadlines late.
"""

from __future__ import annotations

from concurrent import futures
import http.server
import os
import threading
import time

from absl.testing import absltest
import grpc

from tensorflow_serving.tools.benchmark import open_loop_node

# What the stub answers, by the body the generator sent.
_ANSWERS = {
    b"ok": (200, {}, b'{"predictions": [[1.0]]}'),
    b"shed": (503, {"Retry-After": "1"}, b'{"error": "overloaded"}'),
    b"bare": (503, {}, b'{"error": "overloaded"}'),
    b"late": (504, {}, b'{"error": "deadline"}'),
    b"bad": (400, {}, b'{"error": "bad"}'),
}
_SLOW_S = 3.0  # The stub's answer to "slow": far past the 300 ms deadline.


class _Stub(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"

  def do_POST(self):  # pylint: disable=invalid-name
    body = self.rfile.read(int(self.headers["Content-Length"]))
    if body == b"slow":
      time.sleep(_SLOW_S)
      body = b"ok"
    code, headers, payload = _ANSWERS[body]
    self.send_response(code)
    for name, value in headers.items():
      self.send_header(name, value)
    self.send_header("Content-Length", str(len(payload)))
    self.end_headers()
    try:
      self.wfile.write(payload)
    except OSError:
      pass  # The client gave up on a slow answer.

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass


class _GrpcStub:
  """Answers /a.B/Predict by the message the generator sent."""

  def __init__(self):
    self.time_remaining: list[float | None] = []

  def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
    self.time_remaining.append(context.time_remaining())
    if request == b"slow":
      time.sleep(_SLOW_S)
      return b"late"
    if request == b"shed":
      context.set_trailing_metadata((("grpc-retry-pushback-ms", "100"),))
      context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")
    if request == b"bare":
      context.abort(grpc.StatusCode.UNAVAILABLE, "overloaded")
    if request == b"late":
      context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline")
    if request == b"bad":
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    return b"scores"


class SummarizeTest(absltest.TestCase):

  def test_schedule_is_fixed_by_rate_and_duration(self):
    self.assertEqual(
        open_loop_node.schedule_us(4, 1.0), [0, 250000, 500000, 750000]
    )
    self.assertLen(open_loop_node.schedule_us(3000, 5.0), 15000)
    self.assertEqual(open_loop_node.schedule_us(1, 0.1), [0])

  def test_counts_goodput_and_late_sends(self):
    records = open_loop_node.parse_records(
        [
            "0 100 200000 ok",
            "1000 200 400000 ok",
            "2000 50 600000 ok",  # answered after the 500 ms deadline
            "3000 20000 1000 shed",  # sent 20 ms late
            "4000 0 1000 shed_nohint",
            "5000 0 500000 timeout",
            "6000 0 2000 deadline",
            "7000 0 2000 http_400",
            "8000 0 0 client_full",
            "",
        ]
    )
    level = open_loop_node.summarize(records, 9.0, 1.0, deadline_ms=500)
    self.assertEqual(level.sent, 9)
    self.assertEqual((level.ok, level.ok_late), (2, 1))
    self.assertEqual((level.shed, level.shed_no_hint), (1, 1))
    self.assertEqual(level.timed_out, 2)
    self.assertEqual(level.errors, {"http_400": 1, "client_full": 1})
    self.assertEqual(level.goodput_per_s, 2.0)
    self.assertEqual(level.late_sent, 2)
    self.assertEqual(level.max_lag_ms, 20.0)
    self.assertAlmostEqual(level.latency_ms["max"], 400.0)
    self.assertFalse(level.valid)  # 2 of 9 calls left late or not at all

  def test_no_deadline_counts_every_ok(self):
    records = open_loop_node.parse_records(["0 0 9000000 ok"])
    level = open_loop_node.summarize(records, 0.0, 1.0, deadline_ms=0)
    self.assertEqual((level.ok, level.ok_late), (1, 0))
    self.assertTrue(level.valid)

  def test_bad_line_is_an_error(self):
    with self.assertRaises(ValueError):
      open_loop_node.parse_records(["1 2 3"])


class GeneratorTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    self.addCleanup(server.server_close)
    self.addCleanup(server.shutdown)
    self.port = server.server_address[1]
    self.dir = self.create_tempdir().full_path

  def target(self, bodies: list[bytes]) -> open_loop_node.Target:
    path = os.path.join(self.dir, "bodies.bin")
    open_loop_node.write_bodies(path, bodies)
    return open_loop_node.Target(
        protocol="rest",
        host="127.0.0.1",
        port=self.port,
        path="/v1/models/m:predict",
        bodies_file=path,
        connections=64,
    )

  def records(self, name: str) -> list[open_loop_node.Record]:
    with open(os.path.join(self.dir, name + ".records"), encoding="utf-8") as f:
      return open_loop_node.parse_records(f)

  def test_open_loop_sends_on_schedule_and_classifies_answers(self):
    kinds = [b"ok", b"shed", b"bare", b"late", b"bad", b"slow"]
    level = open_loop_node.run(
        self.target(kinds),
        os.path.join(self.dir, "open"),
        mode="open",
        rate_per_s=60,
        duration_s=0.5,
        deadline_ms=300,
    )
    records = self.records("open")
    # Due times follow the schedule, whatever the answers took.
    due = sorted(r.due_us for r in records)
    expected = open_loop_node.schedule_us(60, 0.5)
    self.assertLen(due, len(expected))
    for got, want in zip(due, expected):
      self.assertAlmostEqual(got, want, delta=1)
    # Call i carries body i % 6, so the 30 calls are 5 of each kind.
    self.assertEqual(level.sent, 30)
    self.assertEqual(level.ok + level.ok_late, 5)
    self.assertEqual(level.shed, 5)
    self.assertEqual(level.shed_no_hint, 5)
    self.assertEqual(level.timed_out, 10)  # 504s and the slow answers
    self.assertEqual(level.errors, {"http_400": 5})
    slow = [r for r in records if round(r.due_us * 60 / 1e6) % 6 == 5]
    self.assertLen(slow, 5)
    self.assertTrue(all(r.outcome == "timeout" for r in slow), slow)

  def test_closed_loop_sends_without_a_deadline(self):
    level = open_loop_node.run(
        self.target([b"ok"]),
        os.path.join(self.dir, "closed"),
        mode="closed",
        concurrency=2,
        duration_s=0.3,
        deadline_ms=0,
    )
    self.assertGreater(level.ok, 0)
    self.assertEqual(level.sent, level.ok)


class GrpcGeneratorTest(absltest.TestCase):

  def test_grpc_status_from_trailers_and_grpc_timeout_sent(self):
    stub = _GrpcStub()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "a.B", {"Predict": grpc.unary_unary_rpc_method_handler(stub)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    self.addCleanup(server.stop, None)
    work = self.create_tempdir().full_path
    bodies = os.path.join(work, "bodies.bin")
    kinds = [b"ok", b"shed", b"bare", b"late", b"bad", b"slow"]
    open_loop_node.write_bodies(
        bodies, [open_loop_node.grpc_frame(k) for k in kinds]
    )
    level = open_loop_node.run(
        open_loop_node.Target(
            "grpc", "127.0.0.1", port, "/a.B/Predict", bodies, 2
        ),
        os.path.join(work, "open"),
        mode="open",
        rate_per_s=60,
        duration_s=0.5,
        deadline_ms=300,
    )
    self.assertEqual(level.sent, 30)
    self.assertEqual(level.ok + level.ok_late, 5)
    self.assertEqual((level.shed, level.shed_no_hint), (5, 5))
    self.assertEqual(level.timed_out, 10)  # DEADLINE_EXCEEDED and the slow
    self.assertEqual(level.errors, {"grpc_3": 5})
    # Every call carried a grpc-timeout no longer than its deadline.
    self.assertLen(stub.time_remaining, 30)
    for remaining in stub.time_remaining:
      self.assertIsNotNone(remaining)
      self.assertLessEqual(remaining, 0.3)


if __name__ == "__main__":
  absltest.main()
