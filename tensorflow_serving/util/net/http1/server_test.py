"""The HTTP/1.1 engine's limits and timeouts, over a socket, with a bare app.

The application here is three lines: the engine must not need more (the
REST glue's own behaviour is model_servers/rest_server_test.py).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time

from absl.testing import absltest

from tensorflow_serving.util.net.http1 import server as http1_server


async def _echo(request: http1_server.Request) -> http1_server.SimpleResponse:
  if request.path.startswith("/sleep/"):
    await asyncio.sleep(float(request.path.rsplit("/", 1)[1]))
  return http1_server.SimpleResponse(
      200, json.dumps({"size": len(request.body)}).encode()
  )


def _error(status: int, message: str) -> http1_server.SimpleResponse:
  return http1_server.SimpleResponse(
      status, json.dumps({"error": message}).encode()
  )


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
  """One response: status, headers (lower-cased), body (Content-Length)."""
  data = b""
  while b"\r\n\r\n" not in data:
    chunk = sock.recv(65536)
    if not chunk:
      raise ConnectionError(f"closed after {data!r}")
    data += chunk
  head, body = data.split(b"\r\n\r\n", 1)
  lines = head.decode("latin-1").split("\r\n")
  headers = dict(
      (k.strip().lower(), v.strip())
      for k, v in (line.split(":", 1) for line in lines[1:])
  )
  length = int(headers.get("content-length", 0))
  while len(body) < length:
    body += sock.recv(65536)
  return int(lines[0].split()[1]), headers, body


def closed(sock: socket.socket, timeout_s: float = 5.0) -> bool:
  sock.settimeout(timeout_s)
  try:
    while True:
      data = sock.recv(65536)
      if not data:
        return True
  except (ConnectionResetError, BrokenPipeError):
    return True
  except TimeoutError:
    return False


class EngineTest(absltest.TestCase):

  def start(self, timeout_s: float | None = 30.0, **limits) -> None:
    self.loop = asyncio.new_event_loop()
    thread = threading.Thread(target=self.loop.run_forever, daemon=True)
    thread.start()
    app = http1_server.HttpApp(
        route=_echo,
        error=_error,
        timeout_s=timeout_s,
        extra_headers=(("X-Extra", "yes"),),
    )
    self.server = http1_server.HttpServer(
        app, 0, "127.0.0.1", http1_server.Http1Limits(**limits)
    )
    asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop():
      asyncio.run_coroutine_threadsafe(self.server.stop(2), self.loop).result(
          10
      )
      self.loop.call_soon_threadsafe(self.loop.stop)
      thread.join(10)

    self.addCleanup(stop)

  def connect(self) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", self.server.port), 10)
    self.addCleanup(sock.close)
    return sock

  def test_extra_headers_and_route(self):
    self.start()
    sock = self.connect()
    sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    status, headers, body = read_response(sock)
    self.assertEqual(status, 200)
    self.assertEqual(headers["x-extra"], "yes")
    self.assertEqual(json.loads(body), {"size": 3})

  def test_long_url_is_414(self):
    self.start(max_url_bytes=1000)
    sock = self.connect()
    sock.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    status, _, body = read_response(sock)
    self.assertEqual(status, 414)
    self.assertIn("URL", json.loads(body)["error"])
    self.assertTrue(closed(sock))

  def test_large_headers_are_431(self):
    self.start(max_header_bytes=2000)
    sock = self.connect()
    sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-A: " + b"b" * 3000 + b"\r\n\r\n")
    status, _, _ = read_response(sock)
    self.assertEqual(status, 431)
    self.assertTrue(closed(sock))

  def test_declared_large_body_is_413_before_it_arrives(self):
    self.start(max_body_bytes=1000)
    sock = self.connect()
    sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n")
    status, _, body = read_response(sock)
    self.assertEqual(status, 413)
    self.assertIn("larger than 1000 bytes", json.loads(body)["error"])

  def test_chunked_body_past_the_limit_is_413(self):
    self.start(max_body_bytes=10000)
    sock = self.connect()
    sock.sendall(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1000\r\n" + b"z" * 4096 + b"\r\n"
    try:
      for _ in range(10):
        sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
      pass
    status, _, _ = read_response(sock)
    self.assertEqual(status, 413)

  def test_gzip_bomb_is_413(self):
    self.start(max_body_bytes=1 << 20)
    bomb = gzip.compress(b"\0" * (64 << 20))
    sock = self.connect()
    sock.sendall(
        b"POST /x HTTP/1.1\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb
    )
    status, _, body = read_response(sock)
    self.assertEqual(status, 413)
    self.assertIn("decompressed", json.loads(body)["error"])
    sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nok")
    self.assertEqual(read_response(sock)[0], 200)

  def test_body_in_many_reads_arrives_whole(self):
    self.start()
    sock = self.connect()
    sock.sendall(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(64):
      sock.sendall(b"1000\r\n" + b"z" * 4096 + b"\r\n")
      time.sleep(0.001)
    sock.sendall(b"0\r\n\r\n")
    status, _, body = read_response(sock)
    self.assertEqual(status, 200)
    self.assertEqual(json.loads(body), {"size": 64 * 4096})
    self.assertEqual(self.server.budget.used, 0)

  def test_inflated_body_counts_against_the_budget_until_answered(self):
    self.start()
    packed = gzip.compress(b"\0" * (4 << 20))
    sock = self.connect()
    sock.sendall(
        b"POST /sleep/0.5 HTTP/1.1\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(packed) + packed
    )
    deadline = time.monotonic() + 5
    while self.server.budget.used < (4 << 20) and time.monotonic() < deadline:
      time.sleep(0.01)
    self.assertEqual(self.server.budget.used, len(packed) + (4 << 20))
    status, _, body = read_response(sock)
    self.assertEqual(status, 200)
    self.assertEqual(json.loads(body), {"size": 4 << 20})
    self.assertEqual(self.server.budget.used, 0)

  def test_slow_headers_are_408(self):
    self.start(header_timeout_s=0.3)
    sock = self.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nX-Slow: ")
    started = time.monotonic()
    status, _, _ = read_response(sock)
    self.assertEqual(status, 408)
    self.assertLess(time.monotonic() - started, 3)
    self.assertTrue(closed(sock))

  def test_slow_body_is_408_within_the_deadline(self):
    self.start(timeout_s=0.5, body_timeout_s=30)
    sock = self.connect()
    sock.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    started = time.monotonic()
    for _ in range(20):  # a byte every 0.1 s keeps the body timeout happy
      try:
        sock.sendall(b"d")
      except (BrokenPipeError, ConnectionResetError):
        break
      time.sleep(0.1)
      sock.settimeout(0.01)
      try:
        if sock.recv(1, socket.MSG_PEEK):
          break
      except TimeoutError:
        pass
    sock.settimeout(10)
    status, _, body = read_response(sock)
    self.assertEqual(status, 408)
    self.assertIn("Deadline", json.loads(body)["error"])
    self.assertLess(time.monotonic() - started, 3)

  def test_idle_keep_alive_connection_closes(self):
    self.start(keepalive_timeout_s=0.3)
    sock = self.connect()
    sock.sendall(b"GET /x HTTP/1.1\r\n\r\n")
    self.assertEqual(read_response(sock)[0], 200)
    self.assertTrue(closed(sock, 5))

  def test_silent_connection_closes_after_the_header_timeout(self):
    self.start(header_timeout_s=0.3)
    self.assertTrue(closed(self.connect(), 5))

  def test_deadline_is_504_while_running(self):
    self.start(timeout_s=0.3)
    sock = self.connect()
    sock.sendall(b"GET /sleep/5 HTTP/1.1\r\n\r\n")
    status, _, body = read_response(sock)
    self.assertEqual(status, 504)
    self.assertEqual(json.loads(body), {"error": "Deadline Exceeded"})

  def test_server_budget_pauses_reading_then_serves(self):
    # Two bodies of 600 KB against a 1 MB budget: the second waits its turn.
    self.start(max_body_bytes=700 << 10, max_server_buffer_bytes=1 << 20)
    first, second = self.connect(), self.connect()
    body = b"q" * (600 << 10)
    head = b"POST /sleep/0.3 HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    first.sendall(head + body)
    time.sleep(0.1)
    second.sendall(head + body)
    self.assertEqual(read_response(first)[0], 200)
    self.assertEqual(read_response(second)[0], 200)
    self.assertEqual(self.server.budget.used, 0)


class DefaultLimitsTest(absltest.TestCase):

  def test_defaults_refuse_no_body_upstream_takes(self):
    # Upstream's REST server documents no body limit; ours defaults to 2 GiB-1,
    # as gRPC's message limit, and the budget holds such a body.
    limits = http1_server.Http1Limits()
    self.assertGreaterEqual(limits.max_body_bytes, 2**31 - 1)
    self.assertGreaterEqual(
        limits.max_server_buffer_bytes, limits.max_body_bytes
    )


if __name__ == "__main__":
  absltest.main()
