"""The REST API's HTTP/1.1 server: an asyncio protocol over httptools.

aiohttp's web framework spent ~95 us of event-loop time per request (a
trivial handler tops out near 10k req/s), more than TensorFlow spends per
batched Predict row; this spends ~35 us. It speaks only what the REST API
needs, with the llhttp C parser (httptools) framing requests: keep-alive
(HTTP/1.1, and 1.0 when asked), pipelined requests answered in order,
Content-Length and chunked bodies, gzip/deflate request bodies,
`Expect: 100-continue`, and responses framed by Content-Length.

Only transport concerns live here: routing `/v1/...` to the handler, the REST
timeout, CORS, the Prometheus path. The API itself is HttpRestApiHandler.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
import dataclasses
import email.utils
import http
import re
import socket
import time
from typing import Any
import zlib

from absl import logging
import httptools

from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

Response = http_rest_api_handler.Response

# Seconds in-flight requests get to finish when the server stops.
SHUTDOWN_GRACE_S = 30.0
# A keep-alive connection that sends nothing is closed after one to two of
# these (aiohttp closed them after 75 s).
_IDLE_SWEEP_S = 60.0
# Requests parsed ahead of the one being served before reading pauses.
_MAX_PIPELINED = 16

_ORIGIN_RE = re.compile(r"https?://.*", re.IGNORECASE)
_CORS_HEADERS = (
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Allow-Methods: POST, GET\r\n"
    b"Access-Control-Allow-Headers: Content-Type\r\n"
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode())
    for s in http.HTTPStatus
}


@dataclasses.dataclass(frozen=True)
class HttpOptions:
  """REST transport settings from the binary's flags."""

  timeout_s: float | None = 30.0
  enable_cors: bool = False
  # Serve Prometheus text here when monitoring is enabled.
  prometheus_path: str | None = None


@dataclasses.dataclass(slots=True)
class Request:
  """One parsed request, as routing and the handler need it."""

  method: str
  # The raw (still %-encoded) path, without the query string.
  path: str
  # Lower-cased names; the last value of a repeated header wins.
  headers: dict[bytes, bytes]
  body: bytes
  keep_alive: bool = True
  http_10: bool = False
  # Set when the transport already knows the answer (a malformed request).
  response: Response | None = None


class RestApp:
  """Routes a request: an immediate Response, or the handler's coroutine."""

  def __init__(
      self,
      handler: http_rest_api_handler.HttpRestApiHandler,
      runner: model_runner.ModelRunner,
      options: HttpOptions,
  ):
    self.handler = handler
    self.runner = runner
    self.options = options

  def route(self, request: Request) -> Response | Coroutine[Any, Any, Response]:
    method, path = request.method, request.path
    options = self.options
    if (
        options.prometheus_path
        and method == "GET"
        and path == options.prometheus_path
    ):
      return Response(200, metrics.exposition(), metrics.CONTENT_TYPE)
    if not http_rest_api_handler.API_PATH_RE.fullmatch(path):
      return self.handler.error(status.not_found("Not Found"))
    if options.enable_cors and method == "OPTIONS":
      return self._preflight(request)
    try:
      body = _decoded_body(request)
    except status.ServingError as exc:
      return self.handler.error(exc)
    return self.handler.handle(method, path, body)

  def deadline_exceeded(self) -> Response:
    # As upstream: the run's deadline (RunOptions.timeout_in_ms) has passed.
    return self.handler.error(status.deadline_exceeded("Deadline Exceeded"))

  def _preflight(self, request: Request) -> Response:
    origin = request.headers.get(b"origin", b"").decode("latin-1")
    if not _ORIGIN_RE.fullmatch(origin):
      return self.handler.error(
          status.invalid_argument("Origin header is missing in CORS preflight")
      )
    return Response(200, b"", "text/plain")


def make_app(
    handler: http_rest_api_handler.HttpRestApiHandler,
    runner: model_runner.ModelRunner,
    options: HttpOptions = HttpOptions(),
) -> RestApp:
  """The REST app that sends every `/v1/...` request to `handler`."""
  return RestApp(handler, runner, options)


def _decoded_body(request: Request) -> bytes:
  """The body with its Content-Encoding (gzip or deflate) undone.

  Other encodings pass through untouched, as with aiohttp; the handler then
  reports the body as unparsable.
  """
  body = request.body
  encoding = request.headers.get(b"content-encoding")
  if encoding is None or not body:
    return body
  encoding = encoding.strip().lower()
  if encoding in (b"gzip", b"x-gzip"):
    wbits = 16 + zlib.MAX_WBITS
  elif encoding == b"deflate":
    # RFC 9110 means zlib-wrapped; some clients send raw deflate.
    wbits = zlib.MAX_WBITS if body[0] & 0x0F == 8 else -zlib.MAX_WBITS
  else:
    return body
  try:
    return zlib.decompress(body, wbits)
  except zlib.error as exc:
    raise status.invalid_argument(
        f"Cannot decode {encoding.decode()} request body: {exc}"
    ) from exc


def _request_path(target: bytes) -> str:
  """The path of a request target, as aiohttp's `rel_url.raw_path`."""
  if not target.startswith(b"/"):  # absolute-form, or "*"
    try:
      target = httptools.parse_url(target).path or b"/"
    except httptools.HttpParserInvalidURLError:
      pass
  return target.partition(b"?")[0].decode("utf-8", "replace")


_date_second = 0
_date_header = b""


def _date() -> bytes:
  """The Date header line, formatted at most once a second."""
  global _date_second, _date_header
  now = int(time.time())
  if now != _date_second:
    _date_second = now
    _date_header = (
        b"Date: %s\r\n" % email.utils.formatdate(now, usegmt=True).encode()
    )
  return _date_header


class _Connection(asyncio.Protocol):
  """One client connection: requests served one at a time, in arrival order.

  Pipelined requests wait in a queue; responses that are ready together go
  out in one write. A request runs as one task, which the REST timeout
  cancels. Draining (EOF, `Connection: close`, a malformed request, server
  stop) answers what was received, then closes.
  """

  def __init__(self, server: HttpServer):
    self._server = server
    self._app = server.app
    self._timeout_s = server.app.options.timeout_s
    self._extra_headers = (
        _CORS_HEADERS if server.app.options.enable_cors else b""
    )
    self._loop = asyncio.get_running_loop()
    self._transport: asyncio.Transport | None = None
    self._parser = httptools.HttpRequestParser(self)
    # The request being parsed.
    self._target = b""
    self._headers: dict[bytes, bytes] = {}
    self._body: list[bytes] = []
    self._expect_continue = False
    # Parsed requests waiting their turn; the one running and its timer.
    self._queue: collections.deque[Request] = collections.deque()
    self._current: Request | None = None
    self._task: asyncio.Task | None = None
    self._timer: asyncio.TimerHandle | None = None
    self._out: list[bytes] = []
    self._draining = False
    self._write_paused = False
    self._read_paused = False
    # Data arrived since the last idle sweep.
    self.active = True

  # --- asyncio.Protocol -----------------------------------------------------

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    self._transport = transport  # type: ignore[assignment]
    self._server.connection_opened(self)

  def connection_lost(self, exc: Exception | None) -> None:
    # A running request finishes (as with aiohttp); its answer is dropped.
    self._transport = None
    self._queue.clear()
    self._server.connection_closed(self)

  def data_received(self, data: bytes) -> None:
    self.active = True
    try:
      self._parser.feed_data(data)
    except httptools.HttpParserUpgrade:
      # No protocol upgrades: answer the request in HTTP/1.1, then close.
      self._draining = True
    except httptools.HttpParserError as exc:
      self._queue.append(
          Request(
              "",
              "",
              {},
              b"",
              keep_alive=False,
              response=self._app.handler.error(
                  status.invalid_argument(f"Malformed HTTP request: {exc}")
              ),
          )
      )
      self._draining = True
    self._serve()

  def eof_received(self) -> bool:
    self._draining = True
    self._serve()
    return True  # Keeps the transport open to answer; _serve closes it.

  def pause_writing(self) -> None:
    self._write_paused = True
    self._update_reading()

  def resume_writing(self) -> None:
    self._write_paused = False
    self._update_reading()

  # --- httptools callbacks --------------------------------------------------

  def on_message_begin(self) -> None:
    self._target = b""
    self._headers = {}
    self._body = []

  def on_url(self, url: bytes) -> None:
    self._target += url

  def on_header(self, name: bytes, value: bytes) -> None:
    self._headers[name.lower()] = value

  def on_headers_complete(self) -> None:
    expect = self._headers.get(b"expect")
    self._expect_continue = (
        expect is not None
        and expect.lower() == b"100-continue"
        and self._parser.get_http_version() == "1.1"
    )

  def on_body(self, body: bytes) -> None:
    self._body.append(body)

  def on_message_complete(self) -> None:
    self._expect_continue = False  # The body came regardless.
    parser = self._parser
    self._queue.append(
        Request(
            parser.get_method().decode("ascii", "replace"),
            _request_path(self._target),
            self._headers,
            b"".join(self._body),
            parser.should_keep_alive(),
            parser.get_http_version() == "1.0",
        )
    )

  # --- Serving ----------------------------------------------------------------

  def _serve(self) -> None:
    """Answers queued requests in order until one has to wait, then writes."""
    while self._task is None and self._queue:
      request = self._queue.popleft()
      result = request.response
      if result is None:
        try:
          result = self._app.route(request)
        except Exception as exc:  # pylint: disable=broad-except
          result = self._internal_error(request, exc)
      if isinstance(result, Response):
        self._respond(request, result)
        continue
      self._current = request
      self._task = self._loop.create_task(result)
      self._task.add_done_callback(self._on_done)
      if self._timeout_s is not None:
        self._timer = self._loop.call_later(self._timeout_s, self._task.cancel)
    transport = self._transport
    if transport is None:
      return
    idle = self._task is None and not self._queue
    if idle and self._expect_continue:
      self._expect_continue = False
      self._out.append(_CONTINUE)
    if self._out:
      transport.write(b"".join(self._out))
      self._out.clear()
    if idle and self._draining:
      transport.close()
    else:
      self._update_reading()

  def _on_done(self, task: asyncio.Task) -> None:
    if self._timer is not None:
      self._timer.cancel()
      self._timer = None
    request, self._current, self._task = self._current, None, None
    if self._transport is None or self._transport.is_closing():
      return
    if task.cancelled():  # Only the REST timeout cancels a live request.
      response = self._app.deadline_exceeded()
    elif task.exception() is not None:
      response = self._internal_error(request, task.exception())
    else:
      response = task.result()
    self._respond(request, response)
    self._serve()

  def _internal_error(self, request: Request, exc: BaseException) -> Response:
    # The handler answers its own errors; this is a bug in the transport.
    logging.error(
        "REST %s %s failed", request.method, request.path, exc_info=exc
    )
    return self._app.handler.error(
        status.internal(f"{type(exc).__name__}: {exc}")
    )

  def _respond(self, request: Request, response: Response) -> None:
    """Queues the response's bytes; the last before a close says so."""
    keep_alive = request.keep_alive and not (self._draining and not self._queue)
    if not keep_alive:
      self._draining = True
      self._queue.clear()
      connection = b"Connection: close\r\n"
    elif request.http_10:
      connection = b"Connection: keep-alive\r\n"
    else:
      connection = b""
    code, body = response.status, response.body
    self._out.append(
        b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s%s\r\n"
        % (
            _STATUS_LINES.get(code) or b"HTTP/1.1 %d \r\n" % code,
            response.content_type.encode("latin-1"),
            len(body),
            _date(),
            self._extra_headers,
            connection,
        )
    )
    if request.method != "HEAD":
      self._out.append(body)

  def _update_reading(self) -> None:
    """Reads only while the client can take answers and few are queued."""
    transport = self._transport
    if transport is None or transport.is_closing():
      return
    pause = (
        self._draining
        or self._write_paused
        or len(self._queue) >= _MAX_PIPELINED
    )
    if pause != self._read_paused:
      self._read_paused = pause
      if pause:
        transport.pause_reading()
      else:
        transport.resume_reading()

  # --- Called by HttpServer -------------------------------------------------

  def drain(self) -> None:
    """Finishes the requests received, then closes (now, if idle)."""
    self._draining = True
    self._serve()

  def close_if_idle(self) -> None:
    """For the idle sweep: closes if nothing arrived or ran since last time."""
    if (
        not self.active
        and self._task is None
        and not self._queue
        and self._transport is not None
    ):
      self._transport.close()
    self.active = False

  def abort(self) -> None:
    if self._transport is not None:
      self._transport.abort()
    if self._task is not None:
      self._task.cancel()


class HttpServer:
  """Listens on `port` and serves `app` on each connection.

  `host` None means all interfaces (IPv4 and IPv6), as aiohttp bound them.
  Port None binds nothing: it serves on add_listening_socket's sockets only.
  """

  def __init__(self, app: RestApp, port: int | None, host: str | None = None):
    self.app = app
    self._port = port
    self._host = host
    self._server: asyncio.Server | None = None
    # Listeners on sockets bound elsewhere, by the socket's fd.
    self._adopted: dict[int, asyncio.Server] = {}
    self._connections: set[_Connection] = set()
    self._sweeper: asyncio.TimerHandle | None = None
    self._all_closed: asyncio.Event | None = None

  @property
  def port(self) -> int:
    """The bound port (for port 0; give a host, or each family gets its own)."""
    server = self._server or next(iter(self._adopted.values()))
    return server.sockets[0].getsockname()[1]

  async def start(self) -> None:
    loop = asyncio.get_running_loop()
    if self._port is not None:
      self._server = await loop.create_server(
          lambda: _Connection(self),
          host=self._host,
          port=self._port,
          reuse_address=True,
      )
    self._sweeper = loop.call_later(_IDLE_SWEEP_S, self._sweep)

  async def add_listening_socket(self, sock: socket.socket) -> None:
    """Also accepts on `sock`, bound elsewhere; closing it closes `sock`.

    model_servers/workers: worker processes share sockets their supervisor
    bound.
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(self), sock=sock)
    self._adopted[sock.fileno()] = server

  def remove_listening_socket(self, sock: socket.socket) -> None:
    """Stops accepting on a socket of add_listening_socket; closes it."""
    server = self._adopted.pop(sock.fileno(), None)
    if server is not None:
      server.close()

  async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """Stops accepting, lets in-flight requests finish, then closes.

    Idle keep-alive connections close at once, busy ones after answering what
    they received; whatever is left after `grace_s` is cut off.
    """
    if self._sweeper is None:
      return
    self._sweeper.cancel()
    self._sweeper = None
    adopted = list(self._adopted.values())
    self._adopted.clear()
    for server in filter(None, [self._server, *adopted]):
      server.close()
    self._all_closed = asyncio.Event()
    for conn in list(self._connections):
      conn.drain()
    if self._connections:
      try:
        await asyncio.wait_for(self._all_closed.wait(), grace_s)
      except TimeoutError:
        logging.warning(
            "Closing %d REST connections still busy after %.0f s",
            len(self._connections),
            grace_s,
        )
        for conn in list(self._connections):
          conn.abort()
    for server in filter(None, [self._server, *adopted]):
      await server.wait_closed()
    self._server = None

  def connection_opened(self, conn: _Connection) -> None:
    self._connections.add(conn)
    if self._all_closed is not None:  # Accepted just before stop().
      conn.drain()

  def connection_closed(self, conn: _Connection) -> None:
    self._connections.discard(conn)
    if not self._connections and self._all_closed is not None:
      self._all_closed.set()

  def _sweep(self) -> None:
    for conn in list(self._connections):
      conn.close_if_idle()
    self._sweeper = asyncio.get_running_loop().call_later(
        _IDLE_SWEEP_S, self._sweep
    )
