"""An HTTP/1.1 server on asyncio over the sans-IO core in connection.py.

aiohttp's web framework spent ~95 us of event-loop time per request (a
trivial handler tops out near 10k req/s), more than TensorFlow spends per
batched Predict row; this spends ~35 us. It knows nothing of the API it
serves: the application (`HttpApp`) hands it routing, error rendering, the
request deadline and extra response headers. The engine adds what any
HTTP/1.1 server owes its clients: pipelined requests answered in order,
gzip/deflate request bodies inflated with a cap, and bounds on everything
a client controls (sizes in Http1Limits, header/body/idle timeouts, the
deadline counted from the request's first byte), refusing with 400, 408,
413, 414 or 431 and an error body the application renders.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
import dataclasses
import socket
import ssl
from typing import Any, Protocol
import zlib

from absl import logging

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net import inflate
from tensorflow_serving.util.net.http1 import connection as connection_lib

Request = connection_lib.Request
Http1Limits = connection_lib.Http1Limits
# Seconds in-flight requests get to finish when the server stops.
SHUTDOWN_GRACE_S = 30.0
# At most one warning line per this many seconds for misbehaving clients.
_WARN_EVERY_S = 5.0


class Response(Protocol):
  """What routing returns (any object with these, e.g. a dataclass).

  It may also have `headers`: header lines for this response alone (bytes,
  CRLF-terminated; e.g. Retry-After).
  """

  status: int
  body: bytes
  content_type: str


@dataclasses.dataclass(frozen=True)
class SimpleResponse:
  status: int
  body: bytes
  content_type: str = "application/json"


Route = Callable[[Request], "Response | Awaitable[Response]"]


@dataclasses.dataclass(frozen=True)
class HttpApp:
  """What the engine needs from the application it serves.

  `route` answers a request: a coroutine, or a Response when it knows the
  answer at once (saves a task). `error(status, message)` renders the
  engine's own refusals and failures. `timeout_s` bounds a request from its
  first byte to its answer (504 once it runs, 408 while it is still being
  read). `extra_headers` go on every response (e.g. CORS).
  """

  route: Route
  error: Callable[[int, str], Response]
  timeout_s: float | None = 30.0
  extra_headers: Sequence[tuple[str, str]] = ()


class _Connection(asyncio.Protocol):
  """One client connection: requests served one at a time, in arrival order.

  Pipelined requests wait in a queue; responses that are ready together go
  out in one write. A request runs as one task, which the deadline
  cancels. Draining (EOF, `Connection: close`, a refusal, server stop)
  answers what was received, then closes.
  """

  def __init__(self, server: HttpServer):
    self._server = server
    self._app = server.app
    self._timeout_s = server.app.timeout_s
    self._extra_headers = server.extra_headers
    self._loop = server.loop
    self._transport: asyncio.Transport | None = None
    self._core = connection_lib.Http1Connection(
        server.limits, server.budget, self._loop.time
    )
    self._queue: collections.deque[Any] = collections.deque()
    self._queued_bytes = 0
    self._current: Request | None = None
    self._task: asyncio.Future | None = None
    self._timer: asyncio.TimerHandle | None = None
    self._out: list[bytes] = []
    self._draining = False
    self._write_paused = False
    self._read_paused = False
    self.opened = self.last_read = self._loop.time()
    self.ever_read = False

  # asyncio.Protocol

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    self._transport = transport  # type: ignore[assignment]
    self._server.connection_opened(self)

  def connection_lost(self, exc: Exception | None) -> None:
    # A running request finishes; its answer is dropped.
    self._transport = None
    for item in self._queue:
      if isinstance(item, Request):
        self._core.release(item)
    self._queue.clear()
    self._core.close()
    self._server.connection_closed(self)

  def data_received(self, data: bytes) -> None:
    self.last_read = self._loop.time()
    self.ever_read = True
    for item in self._core.receive_data(data):
      if isinstance(item, Request):
        self._queued_bytes += item.held
      else:
        self._draining = True
        logging.log_every_n_seconds(
            logging.WARNING,
            "REST request refused with %d: %s (further such warnings are "
            "limited to one per %.0f s)",
            _WARN_EVERY_S,
            item.status,
            item.message,
            _WARN_EVERY_S,
        )
      self._queue.append(item)
    if self._core.upgrade:
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

  # Serving.

  def _serve(self) -> None:
    """Answers queued requests in order until one has to wait, then writes."""
    while self._task is None and self._queue:
      item = self._queue.popleft()
      if not isinstance(item, Request):
        self._respond_refusal(item)
        continue
      request = item
      self._queued_bytes -= request.held
      if b"content-encoding" in request.headers and request.body:
        result = self._decoded_then_routed(request)
      else:
        try:
          result = self._app.route(request)
        except Exception as exc:  # pylint: disable=broad-except
          result = self._internal_error(request, exc)
      if not asyncio.iscoroutine(result):
        self._respond(request, result)
        continue
      self._current = request
      self._task = self._loop.create_task(result)
      self._task.add_done_callback(self._on_done)
      if self._timeout_s is not None:
        remaining = request.started + self._timeout_s - self._loop.time()
        self._timer = self._loop.call_later(
            max(remaining, 0.0), self._task.cancel
        )
    transport = self._transport
    if transport is None:
      return
    idle = self._task is None and not self._queue
    if idle and self._core.expect_continue:
      self._core.expect_continue = False
      self._out.append(connection_lib.CONTINUE)
    if self._out:
      transport.write(b"".join(self._out))
      self._out.clear()
    if idle and self._draining:
      transport.close()
    else:
      self._update_reading()

  async def _decoded_then_routed(self, request: Request) -> Response:
    """Undoes Content-Encoding (gzip or deflate), capped, then routes.

    Other encodings pass through untouched; the application then reports
    the body as unparsable.
    """
    body = request.body
    encoding = request.headers[b"content-encoding"].strip().lower()
    if encoding in (b"gzip", b"x-gzip"):
      wbits = 16 + zlib.MAX_WBITS
    elif encoding == b"deflate":
      # RFC 9110 means zlib-wrapped; some clients send raw deflate.
      wbits = zlib.MAX_WBITS if body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
      return await _awaitable(self._app.route(request))
    limit = self._server.limits.max_body_bytes
    try:
      inflated = await inflate.inflate_async(body, wbits, limit)
    except inflate.TooLarge:
      return self._app.error(
          413, f"Request body larger than {limit} bytes once decompressed"
      )
    except zlib.error as exc:
      return self._app.error(
          400, f"Cannot decode {encoding.decode()} request body: {exc}"
      )
    # The inflated body counts against the budget too, until answered.
    self._server.budget.add(len(inflated))
    request.held += len(inflated)
    request.body = inflated
    return await _awaitable(self._app.route(request))

  def _on_done(self, task: asyncio.Future) -> None:
    if self._timer is not None:
      self._timer.cancel()
      self._timer = None
    request, self._current, self._task = self._current, None, None
    if self._transport is None or self._transport.is_closing():
      self._core.release(request)
      return
    if task.cancelled():  # Only the deadline cancels a live request.
      response = self._app.error(504, "Deadline Exceeded")
    elif task.exception() is not None:
      response = self._internal_error(request, task.exception())
    else:
      response = task.result()
    self._respond(request, response)
    self._serve()

  def _internal_error(self, request: Request, exc: BaseException) -> Response:
    # The application answers its own errors; this is a bug in it.
    logging.error(
        "REST %s %s failed", request.method, request.path, exc_info=exc
    )
    return self._app.error(500, f"{type(exc).__name__}: {exc}")

  def _respond(self, request: Request, response: Response) -> None:
    """Queues the response's bytes; the last before a close says so."""
    self._core.release(request)
    keep_alive = request.keep_alive and not (self._draining and not self._queue)
    if not keep_alive:
      self._stop_queue()
      connection = b"Connection: close\r\n"
    elif request.http_10:
      connection = b"Connection: keep-alive\r\n"
    else:
      connection = b""
    extra = self._extra_headers
    # A response may carry its own header lines (bytes, CRLF-terminated).
    own = getattr(response, "headers", b"")
    if own:
      extra += own
    self._out.append(
        connection_lib.encode_response(
            response.status,
            response.body,
            response.content_type,
            connection,
            extra,
            request.method == "HEAD",
        )
    )

  def _respond_refusal(self, rejection: connection_lib.Rejected) -> None:
    self._stop_queue()
    response = self._app.error(rejection.status, rejection.message)
    self._out.append(
        connection_lib.encode_response(
            response.status,
            response.body,
            response.content_type,
            b"Connection: close\r\n",
            self._extra_headers,
        )
    )

  def _stop_queue(self) -> None:
    """This answer is the last: what is queued behind it is dropped."""
    self._draining = True
    for item in self._queue:
      if isinstance(item, Request):
        self._core.release(item)
    self._queue.clear()
    self._queued_bytes = 0

  def _update_reading(self) -> None:
    """Reads only while the client takes answers and the budgets allow."""
    transport = self._transport
    if transport is None or transport.is_closing():
      return
    limits = self._server.limits
    over_budget = self._core.over_budget
    pause = (
        self._draining
        or self._write_paused
        or over_budget
        or len(self._queue) >= limits.max_pipelined
        or (self._queue and self._queued_bytes >= limits.max_pipelined_bytes)
    )
    if over_budget and not self._draining:
      self._server.budget.wait(id(self), self._update_reading)
    if pause != self._read_paused:
      self._read_paused = pause
      if pause:
        transport.pause_reading()
      else:
        transport.resume_reading()

  # Called by HttpServer.

  def drain(self) -> None:
    """Finishes the requests received, then closes (now, if idle)."""
    self._draining = True
    self._serve()

  def sweep(self, now: float) -> None:
    """Applies the read timeouts and the keep-alive idle timeout."""
    transport = self._transport
    if transport is None:
      return
    limits = self._server.limits
    core = self._core
    if core.reading and not core.closed:
      started = core.message_started
      why = None
      if not core.headers_done and now - started > limits.header_timeout_s:
        why = "Timed out reading the request headers"
      elif core.headers_done and now - self.last_read > limits.body_timeout_s:
        why = "Timed out reading the request body"
      elif (
          self._timeout_s is not None and now - started > self._timeout_s
      ) and not self._read_paused:
        why = "Deadline exceeded while reading the request"
      if why is not None:
        self._queue.append(core.reject_current(408, why))
        self._draining = True
        self._serve()
      return
    busy = self._task is not None or self._queue
    if busy:
      return
    if not self.ever_read:
      if now - self.opened > limits.header_timeout_s:
        transport.close()
    elif now - self.last_read > limits.keepalive_timeout_s:
      transport.close()

  def abort(self) -> None:
    if self._transport is not None:
      self._transport.abort()
    if self._task is not None:
      self._task.cancel()


def _encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
  return b"".join(
      b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
      for name, value in headers
  )


async def _awaitable(result) -> Response:
  if asyncio.iscoroutine(result):
    return await result
  return result


class HttpServer:
  """Listens on `port` and serves `app` on each connection.

  `host` None means all interfaces (IPv4 and IPv6). With `ssl_context`
  every connection is TLS (HTTPS); its handshake must end within the header
  timeout.
  """

  def __init__(
      self,
      app: HttpApp,
      port: int | None,
      host: str | None = None,
      limits: Http1Limits = connection_lib.DEFAULT_LIMITS,
      ssl_context: ssl.SSLContext | None = None,
  ):
    """Port None binds nothing: it serves on add_listening_socket's only."""
    self.app = app
    self.limits = limits
    self._ssl = ssl_context
    self.extra_headers = _encode_headers(app.extra_headers)
    self.budget = budget_lib.Budget(limits.max_server_buffer_bytes)
    self.loop: asyncio.AbstractEventLoop | None = None
    self._port = port
    self._host = host
    self._server: asyncio.Server | None = None
    # Listeners on sockets bound elsewhere, by the socket's fd.
    self._adopted: dict[int, asyncio.Server] = {}
    self._connections: set[_Connection] = set()
    self._sweeper: asyncio.TimerHandle | None = None
    self._sweep_every_s = max(
        0.05,
        min(
            1.0,
            limits.header_timeout_s / 4,
            limits.body_timeout_s / 4,
            limits.keepalive_timeout_s / 4,
            (app.timeout_s or 4.0) / 4,
        ),
    )
    self._all_closed: asyncio.Event | None = None

  @property
  def port(self) -> int:
    """The bound port (for port 0; give a host, or each family gets its own)."""
    server = self._server or next(iter(self._adopted.values()))
    return server.sockets[0].getsockname()[1]

  async def start(self) -> None:
    self.loop = asyncio.get_running_loop()
    if self._port is not None:
      self._server = await self.loop.create_server(
          lambda: _Connection(self),
          host=self._host,
          port=self._port,
          reuse_address=True,
          backlog=4096,  # asyncio's 100 lets a connection flood crowd out others
          **self._tls(),
      )
    self._sweeper = self.loop.call_later(self._sweep_every_s, self._sweep)

  async def add_listening_socket(self, sock: socket.socket) -> None:
    """Also accepts on `sock`, bound elsewhere; closing it closes `sock`.

    model_servers/workers: worker processes share sockets their supervisor
    bound.
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Connection(self), sock=sock, **self._tls()
    )
    self._adopted[sock.fileno()] = server

  def _tls(self) -> dict[str, Any]:
    if self._ssl is None:
      return {}
    return {
        "ssl": self._ssl,
        "ssl_handshake_timeout": self.limits.header_timeout_s,
    }

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
    servers = [server for server in (self._server, *adopted) if server]
    for server in servers:
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
    for server in servers:
      await server.wait_closed()
    self._server = None

  def connection_opened(self, conn: _Connection) -> None:
    self._connections.add(conn)
    if self._all_closed is not None:  # Accepted just before stop().
      conn.drain()

  def connection_closed(self, conn: _Connection) -> None:
    self._connections.discard(conn)
    self.budget.forget(id(conn))
    if not self._connections and self._all_closed is not None:
      self._all_closed.set()

  def _sweep(self) -> None:
    now = self.loop.time()
    for conn in list(self._connections):
      conn.sweep(now)
    if self._sweeper is not None:  # Not stopped meanwhile.
      self._sweeper = self.loop.call_later(self._sweep_every_s, self._sweep)
