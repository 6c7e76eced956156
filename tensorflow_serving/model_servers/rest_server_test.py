"""The REST glue and HTTP/1.1 engine on a real socket, fake handler behind.

Covers the HTTP/1.1 behaviour clients rely on (keep-alive, pipelining,
chunked and compressed bodies, Expect, Connection: close, bad requests) and
the server's own routes: 404, CORS, the REST timeout, Prometheus, shutdown.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import socket
import threading
import time
import zlib

from absl.testing import absltest
import httptools

from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers import rest_server
from tensorflow_serving.util import metrics

Response = http_rest_api_handler.Response


class FakeHandler:
  """Echoes each request as JSON; `/v1/sleep/<s>` first sleeps s seconds."""

  error = staticmethod(http_rest_api_handler.HttpRestApiHandler.error)

  def __init__(self):
    self.cancelled: list[str] = []
    self.deadlines: list[float | None] = []

  async def handle(
      self,
      method: str,
      path: str,
      body: bytes,
      headers=None,
      query="",
      deadline: float | None = None,
  ) -> Response:
    del headers, query  # Unused: the echo is of method, path and body.
    self.deadlines.append(deadline)
    if path.startswith("/v1/sleep/"):
      try:
        await asyncio.sleep(float(path.rsplit("/", 1)[1]))
      except asyncio.CancelledError:
        self.cancelled.append(path)
        raise
    return Response(
        200,
        json.dumps(
            {"method": method, "path": path, "body": body.decode()}
        ).encode(),
    )


class ParsedResponse:
  """One response read back by httptools."""

  def __init__(self):
    self.status = 0
    self.headers: dict[str, str] = {}
    self.body = b""

  def json(self):
    return json.loads(self.body)


def read_responses(sock: socket.socket, count: int) -> list[ParsedResponse]:
  """Reads `count` responses (skipping 1xx) from a raw socket."""
  done: list[ParsedResponse] = []
  current = ParsedResponse()

  class Callbacks:

    def on_header(self, name: bytes, value: bytes) -> None:
      current.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
      current.body += body

    def on_message_complete(self) -> None:
      nonlocal current
      current.status = parser.get_status_code()
      done.append(current)
      current = ParsedResponse()

  parser = httptools.HttpResponseParser(Callbacks())
  while len(done) < count:
    data = sock.recv(65536)
    if not data:
      break
    parser.feed_data(data)
  return done


def is_closed(sock: socket.socket) -> bool:
  """Whether the server has closed `sock` (EOF or reset within 5 s)."""
  sock.settimeout(5)
  try:
    return sock.recv(1) == b""
  except ConnectionResetError:
    return True
  except TimeoutError:
    return False


class HttpServerTest(absltest.TestCase):

  def start(self, **options) -> None:
    """Serves FakeHandler on a free port, on an event loop of its own."""
    self.handler = FakeHandler()
    self.loop = asyncio.new_event_loop()
    self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
    self.thread.start()
    options = rest_server.HttpOptions(**options)
    app = rest_server.make_app(self.handler, options)
    self.server = rest_server.make_server(app, 0, options, host="127.0.0.1")
    self.on_loop(self.server.start())
    self.port = self.server.port
    self.addCleanup(self.shutdown)

  def on_loop(self, coro, timeout_s: float = 30.0):
    return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

  def shutdown(self) -> None:
    self.on_loop(self.server.stop(grace_s=5.0))
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join()
    self.loop.close()

  def connect(self) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
    self.addCleanup(sock.close)
    return sock

  def request(
      self,
      method: str,
      path: str,
      body: bytes | None = None,
      headers: dict[str, str] | None = None,
  ) -> ParsedResponse:
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
    try:
      conn.request(method, path, body=body, headers=headers or {})
      reply = conn.getresponse()
      response = ParsedResponse()
      response.status = reply.status
      response.headers = {k.lower(): v for k, v in reply.getheaders()}
      response.body = reply.read()
      return response
    finally:
      conn.close()

  # --- HTTP/1.1 -------------------------------------------------------------

  def test_keep_alive_reuses_the_connection(self):
    self.start()
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
    self.addCleanup(conn.close)
    sockets = set()
    for i in range(3):
      conn.request("POST", "/v1/models/m:predict", body=f"{i}")
      reply = conn.getresponse()
      self.assertEqual(json.loads(reply.read())["body"], f"{i}")
      self.assertEqual(reply.getheader("Content-Type"), "application/json")
      sockets.add(id(conn.sock))
    self.assertLen(sockets, 1)

  def test_pipelined_requests_are_answered_in_order(self):
    self.start()
    sock = self.connect()
    sock.sendall(
        b"GET /v1/sleep/0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /v1/b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
        b"GET /nope HTTP/1.1\r\n\r\n"
        b"GET /v1/c?q=1 HTTP/1.1\r\n\r\n"
    )
    responses = read_responses(sock, 4)
    self.assertEqual([r.status for r in responses], [200, 200, 404, 200])
    self.assertEqual(responses[0].json()["path"], "/v1/sleep/0.3")
    self.assertEqual(responses[1].json()["body"], "hi")
    self.assertEqual(responses[3].json()["path"], "/v1/c")

  def test_chunked_body(self):
    self.start()
    sock = self.connect()
    sock.sendall(
        b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
    )
    time.sleep(0.05)
    sock.sendall(b"6\r\n world\r\n0\r\n\r\n")
    (response,) = read_responses(sock, 1)
    self.assertEqual(response.json()["body"], "hello world")

  def test_compressed_bodies_are_inflated(self):
    self.start()
    body = b'{"instances": [1.0]}'
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for encoding, data in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", raw.compress(body) + raw.flush()),
        ("identity", body),
    ):
      with self.subTest(encoding=encoding):
        response = self.request(
            "POST", "/v1/models/m:predict", data, {"Content-Encoding": encoding}
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()["body"], body.decode())

  def test_bad_gzip_body_is_400_json(self):
    self.start()
    response = self.request(
        "POST",
        "/v1/models/m:predict",
        gzip.compress(b"{}")[:-6],
        {"Content-Encoding": "gzip"},
    )
    self.assertEqual(response.status, 400)
    self.assertEqual(response.headers["content-type"], "application/json")
    self.assertIn("Cannot decode gzip request body", response.json()["error"])

  def test_expect_100_continue(self):
    self.start()
    sock = self.connect()
    sock.sendall(
        b"POST /v1/x HTTP/1.1\r\nContent-Length: 2\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    self.assertEqual(sock.recv(100), b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"ok")
    (response,) = read_responses(sock, 1)
    self.assertEqual(response.json()["body"], "ok")

  def test_connection_close_is_honoured(self):
    self.start()
    sock = self.connect()
    sock.sendall(
        b"GET /v1/a HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /v1/ignored HTTP/1.1\r\n\r\n"
    )
    (response,) = read_responses(sock, 1)
    self.assertEqual(response.status, 200)
    self.assertEqual(response.headers["connection"], "close")
    self.assertTrue(is_closed(sock))

  def test_http_10(self):
    self.start()
    sock = self.connect()
    sock.sendall(b"GET /v1/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (response,) = read_responses(sock, 1)
    self.assertEqual(response.headers["connection"], "keep-alive")
    sock.sendall(b"GET /v1/b HTTP/1.0\r\n\r\n")
    (response,) = read_responses(sock, 1)
    self.assertEqual(response.json()["path"], "/v1/b")
    self.assertTrue(is_closed(sock))

  def test_malformed_request_is_400_and_closes(self):
    self.start()
    sock = self.connect()
    sock.sendall(
        b"GET /v1/a HTTP/1.1\r\n\r\n"
        b"GET /v1/b HTTP/1.1\r\nContent-Length: x\r\n\r\n"
    )
    first, second = read_responses(sock, 2)
    self.assertEqual(first.status, 200)
    self.assertEqual(second.status, 400)
    self.assertIn("Malformed HTTP request", second.json()["error"])
    self.assertTrue(is_closed(sock))

  def test_head_has_no_body(self):
    self.start()
    sock = self.connect()
    sock.sendall(b"HEAD /nope HTTP/1.1\r\n\r\nGET /v1/a HTTP/1.1\r\n\r\n")
    data = b""
    while data.count(b"HTTP/1.1") < 2 or not data.endswith(b"}"):
      data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    self.assertIn(b"404", head)
    self.assertTrue(rest.startswith(b"HTTP/1.1 200"), msg=rest)

  # --- Routes -----------------------------------------------------------------

  def test_non_api_paths_are_404(self):
    self.start()
    for path in (
        "/index.html",
        "/v3/models/m",
        "/monitoring/prometheus/metrics",
    ):
      with self.subTest(path=path):
        self.assertEqual(self.request("GET", path).status, 404)

  def test_prometheus_path(self):
    self.start(prometheus_path="/metrics")
    response = self.request("GET", "/metrics")
    self.assertEqual(response.status, 200)
    self.assertEqual(response.headers["content-type"], metrics.CONTENT_TYPE)
    self.assertEqual(self.request("POST", "/metrics").status, 404)

  def test_timeout_is_504_and_cancels_the_request(self):
    self.start(timeout_s=0.2)
    start = time.monotonic()
    response = self.request("POST", "/v1/sleep/10")
    self.assertLess(time.monotonic() - start, 5.0)
    self.assertEqual(response.status, 504)
    self.assertEqual(response.json(), {"error": "Deadline Exceeded"})
    self.assertEqual(self.handler.cancelled, ["/v1/sleep/10"])
    self.assertEqual(self.request("GET", "/v1/sleep/0").status, 200)

  def test_the_handler_gets_the_rest_deadline(self):
    # What lets a model run that cannot finish in time be refused early.
    self.start(timeout_s=7.0)
    before = time.monotonic()
    self.assertEqual(self.request("GET", "/v1/sleep/0").status, 200)
    (deadline,) = self.handler.deadlines
    self.assertGreater(deadline, before + 6.0)
    self.assertLessEqual(deadline, time.monotonic() + 7.0)

  def test_no_rest_timeout_is_no_deadline(self):
    self.start(timeout_s=None)
    self.assertEqual(self.request("GET", "/v1/sleep/0").status, 200)
    self.assertEqual(self.handler.deadlines, [None])

  def test_cors(self):
    self.start(enable_cors=True)
    response = self.request(
        "OPTIONS",
        "/v1/models/m:predict",
        headers={"Origin": "https://example.com"},
    )
    self.assertEqual(response.status, 200)
    self.assertEqual(response.headers["access-control-allow-origin"], "*")
    self.assertEqual(
        response.headers["access-control-allow-methods"], "POST, GET"
    )
    response = self.request("OPTIONS", "/v1/models/m:predict")
    self.assertEqual(response.status, 400)
    self.assertEqual(
        response.json(), {"error": "Origin header is missing in CORS preflight"}
    )
    response = self.request("POST", "/v1/models/m:predict", b"{}")
    self.assertEqual(response.status, 200)
    self.assertEqual(
        response.headers["access-control-allow-headers"], "Content-Type"
    )

  def test_no_cors_by_default(self):
    self.start()
    response = self.request(
        "OPTIONS", "/v1/models/m", headers={"Origin": "https://example.com"}
    )
    self.assertEqual(response.json()["method"], "OPTIONS")
    self.assertNotIn("access-control-allow-origin", response.headers)

  # --- Shutdown ---------------------------------------------------------------

  def test_stop_finishes_in_flight_requests_and_closes_idle_ones(self):
    self.start()
    idle = self.connect()
    idle.sendall(b"GET /v1/a HTTP/1.1\r\n\r\n")
    read_responses(idle, 1)
    busy = self.connect()
    busy.sendall(b"GET /v1/sleep/0.5 HTTP/1.1\r\n\r\n")
    # Stop once the handler has it: a request still unread when the server
    # stops is not in flight (and on a loaded host 0.1 s was not enough).
    deadline = time.monotonic() + 10
    while len(self.handler.deadlines) < 2 and time.monotonic() < deadline:
      time.sleep(0.01)
    stopped = asyncio.run_coroutine_threadsafe(
        self.server.stop(grace_s=10), self.loop
    )
    self.assertTrue(is_closed(idle))
    (response,) = read_responses(busy, 1)
    self.assertEqual(response.status, 200)
    self.assertEqual(response.headers["connection"], "close")
    self.assertTrue(is_closed(busy))
    stopped.result(10)
    with self.assertRaises(OSError):
      socket.create_connection(("127.0.0.1", self.port), timeout=5)


if __name__ == "__main__":
  absltest.main()
