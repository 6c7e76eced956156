"""The server side of an HTTP/1.1 connection as a sans-IO state machine.

Bytes in (`receive_data`) become events: a complete request, or a refusal
the server must answer before closing (400, 413, 414, 431). Responses
become bytes out (`encode_response`). The llhttp C parser (httptools)
frames requests: keep-alive (HTTP/1.1, and 1.0 when asked), pipelining,
Content-Length and chunked bodies, `Expect: 100-continue`. Sizes are
checked as the bytes arrive, before anything is buffered past a limit, as
nginx does with `large_client_header_buffers` and `client_max_body_size`.
No I/O and no clock: the glue (server.py) reads the state this keeps
(`reading`, `headers_done`, `message_started`) to apply its timeouts.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import email.utils
import http
import time

import httptools

from tensorflow_serving.util.net import budget as budget_lib

_STATUS_LINES = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode())
    for s in http.HTTPStatus
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclasses.dataclass(frozen=True)
class Http1Limits:
  """What one HTTP/1.1 server allows, and for how long it waits."""

  # Request target (URL) bytes: past it, 414 (nginx: 8 KiB buffers).
  max_url_bytes: int = 16 << 10
  # The whole header section (names, values, line ends): past it, 431.
  max_header_bytes: int = 64 << 10
  # Request body, both as received and once decompressed: past it, 413.
  # Upstream's REST server documents no limit; the default is 2 GiB-1, as
  # its gRPC message limit.
  max_body_bytes: int = (1 << 31) - 1
  # Body bytes buffered by all connections together (bodies being read,
  # queued or served); past it connections stop reading (back-pressure).
  max_server_buffer_bytes: int = 4 << 30
  # Seconds for a request's line and headers to arrive (nginx's
  # client_header_timeout), between two reads of its body
  # (client_body_timeout), and for an idle keep-alive connection
  # (keepalive_timeout). Past the first two: 408, then close.
  header_timeout_s: float = 60.0
  body_timeout_s: float = 60.0
  keepalive_timeout_s: float = 75.0
  # Requests parsed ahead of the one being served, and their body bytes,
  # before reading pauses.
  max_pipelined: int = 16
  max_pipelined_bytes: int = 4 << 20


DEFAULT_LIMITS = Http1Limits()


@dataclasses.dataclass(slots=True)
class Request:
  """One parsed request, as routing needs it."""

  method: str
  # The raw (still %-encoded) path, without the query string.
  path: str
  # Lower-cased names; the last value of a repeated header wins.
  headers: dict[bytes, bytes]
  # A body that arrived in several reads is a bytearray: joining its
  # pieces at the end would hold the body twice, for a moment, on the loop.
  body: bytes | bytearray
  keep_alive: bool = True
  http_10: bool = False
  # When its first byte arrived (the glue's clock): the deadline counts
  # from here, so it covers reading the body.
  started: float = 0.0
  # Bytes of the server budget this request holds until answered.
  held: int = 0
  # The query string (after `?`, still %-encoded), "" without one.
  query: str = ""


@dataclasses.dataclass(slots=True)
class Rejected:
  """A request the transport answers itself (`status`, then close)."""

  status: int
  message: str
  # For `Connection: close` on the answer (HTTP/1.0 clients).
  http_10: bool = False


class _Reject(Exception):  # noqa: N818 (control flow out of a callback)
  pass


def request_path(target: bytes) -> str:
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


def encode_response(
    status: int,
    body: bytes,
    content_type: str,
    connection: bytes,
    extra_headers: bytes = b"",
    head: bool = False,
) -> bytes:
  """A response framed by Content-Length; `connection` is its header line."""
  out = b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s%s\r\n" % (
      _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status,
      content_type.encode("latin-1"),
      len(body),
      _date(),
      extra_headers,
      connection,
  )
  return out if head else out + body


class Http1Connection:
  """One connection's request parsing. Not thread-safe; no I/O."""

  def __init__(
      self,
      limits: Http1Limits = DEFAULT_LIMITS,
      budget: budget_lib.Budget | None = None,
      clock: Callable[[], float] = time.monotonic,
  ):
    self._limits = limits
    self._budget = budget or budget_lib.Budget(limits.max_server_buffer_bytes)
    self._clock = clock
    self._parser = httptools.HttpRequestParser(self)
    self._events: list[Request | Rejected] = []
    self._rejection: Rejected | None = None
    # The request being parsed.
    self._url: list[bytes] = []
    self._url_size = 0
    self._header_size = 0
    self._headers: dict[bytes, bytes] = {}
    # The body being received: its first piece as is (most bodies come in
    # one read), then one bytearray that grows in place.
    self._body: bytes | bytearray = b""
    self._body_size = 0
    self.reading = False  # between a request's first byte and its end
    self.headers_done = False
    self.message_started = 0.0
    self.expect_continue = False
    self.upgrade = False  # the client asked to switch protocols: close
    self.closed = False  # refused or broken: parse nothing more

  def receive_data(self, data: bytes) -> list[Request | Rejected]:
    """Parses `data`; returns the requests (or refusal) it completed."""
    if self.closed:
      return []
    try:
      self._parser.feed_data(data)
    except httptools.HttpParserUpgrade:
      # No protocol upgrades: the request is answered in HTTP/1.1, then
      # the connection closes.
      self.upgrade = True
      self.closed = True
    except httptools.HttpParserCallbackError:
      if self._rejection is None:
        raise
      self._fail(self._rejection)
    except httptools.HttpParserError as exc:
      self._fail(Rejected(400, f"Malformed HTTP request: {exc}"))
    events, self._events = self._events, []
    return events

  def _fail(self, rejection: Rejected) -> None:
    self.closed = True
    self._release_partial()
    self._events.append(rejection)

  def _release_partial(self) -> None:
    if self._body_size:
      self._budget.release(self._body_size)
      self._body_size = 0
    self._body = b""

  def _reject(self, status: int, message: str) -> None:
    self._rejection = Rejected(
        status, message, self._parser.get_http_version() == "1.0"
    )
    raise _Reject(message)

  def reject_current(self, status: int, message: str) -> Rejected:
    """A timeout from the glue: the request being read is refused."""
    rejection = Rejected(status, message)
    self._fail(rejection)
    self._events.clear()
    return rejection

  # httptools callbacks.

  def on_message_begin(self) -> None:
    self._url = []
    self._url_size = 0
    self._header_size = 0
    self._headers = {}
    self._body = b""
    self._body_size = 0
    self.reading = True
    self.headers_done = False
    self.message_started = self._clock()

  def on_url(self, url: bytes) -> None:
    self._url_size += len(url)
    if self._url_size > self._limits.max_url_bytes:
      self._reject(
          414, f"Request URL longer than {self._limits.max_url_bytes} bytes"
      )
    self._url.append(url)

  def on_header(self, name: bytes, value: bytes) -> None:
    self._header_size += len(name) + len(value) + 4
    if self._header_size > self._limits.max_header_bytes:
      self._reject(
          431,
          "Request header fields larger than "
          f"{self._limits.max_header_bytes} bytes",
      )
    self._headers[name.lower()] = value

  def on_headers_complete(self) -> None:
    self.headers_done = True
    length = self._headers.get(b"content-length")
    if length is not None and length.strip().isdigit():
      if int(length) > self._limits.max_body_bytes:
        self._reject(413, self._too_large())
    expect = self._headers.get(b"expect")
    self.expect_continue = (
        expect is not None
        and expect.lower() == b"100-continue"
        and self._parser.get_http_version() == "1.1"
    )

  def _too_large(self) -> str:
    return f"Request body larger than {self._limits.max_body_bytes} bytes"

  def on_body(self, body: bytes) -> None:
    size = len(body)
    self._body_size += size
    if self._body_size > self._limits.max_body_bytes:
      self._reject(413, self._too_large())
    self._budget.add(size)
    held = self._body
    if not held:
      self._body = body
    elif isinstance(held, bytearray):
      held += body
    else:
      grown = bytearray(held)
      grown += body
      self._body = grown

  def on_message_complete(self) -> None:
    self.expect_continue = False  # The body came regardless.
    self.reading = False
    parser = self._parser
    target = b"".join(self._url)
    self._events.append(
        Request(
            parser.get_method().decode("ascii", "replace"),
            request_path(target),
            self._headers,
            self._body,
            parser.should_keep_alive(),
            parser.get_http_version() == "1.0",
            self.message_started,
            self._body_size,
            target.partition(b"?")[2].decode("utf-8", "replace"),
        )
    )
    self._body = b""
    self._body_size = 0

  # The budget.

  @property
  def over_budget(self) -> bool:
    return self._budget.used > self._budget.limit

  def release(self, request: Request) -> None:
    """The request is answered: its body leaves the budget."""
    if request.held:
      self._budget.release(request.held)
      request.held = 0

  def close(self) -> None:
    """The connection is gone: a partial body leaves the budget."""
    self.closed = True
    self._release_partial()
