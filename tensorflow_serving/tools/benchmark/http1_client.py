"""A minimal keep-alive HTTP/1.1 client for load tests (REST Predict).

aiohttp's client spends ~3x more CPU per request than this: it builds
headers, cookies and response objects the load generator never reads. Here
a request is one pre-built bytes object written to the socket, and the
response is framed by llhttp (the C parser behind `httptools`), so both
Content-Length and chunked bodies work.
"""

from __future__ import annotations

import asyncio

import httptools


class HttpConnection(asyncio.Protocol):
  """One keep-alive HTTP/1.1 connection: a request at a time, raw bytes out.

  Responses are framed by httptools (llhttp), so Content-Length and chunked
  bodies both work; a closed connection is reopened on the next request.
  """

  def __init__(self, host: str, port: int, timeout_s: float):
    self._host = host
    self._port = port
    self._timeout_s = timeout_s
    self._transport: asyncio.Transport | None = None
    self._parser = None
    self._waiter: asyncio.Future | None = None
    self._body: list[bytes] = []
    self._timer: asyncio.TimerHandle | None = None

  async def connect(self) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: self, self._host, self._port)

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    self._transport = transport  # type: ignore[assignment]
    self._parser = httptools.HttpResponseParser(self)

  def connection_lost(self, exc: Exception | None) -> None:
    if self._transport is not None and not self._transport.is_closing():
      return  # The late notice of a connection already replaced.
    self._transport = None
    self._fail(exc or ConnectionResetError("connection closed"))

  def data_received(self, data: bytes) -> None:
    try:
      self._parser.feed_data(data)
    except httptools.HttpParserError as exc:
      self._fail(exc)
      self.close()

  def on_body(self, body: bytes) -> None:
    self._body.append(body)

  def on_message_complete(self) -> None:
    waiter, self._waiter = self._waiter, None
    if self._timer is not None:
      self._timer.cancel()
    if waiter is not None and not waiter.done():
      waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))
    self._body = []
    if not self._parser.should_keep_alive():
      self.close()

  def _fail(self, exc: BaseException) -> None:
    waiter, self._waiter = self._waiter, None
    if self._timer is not None:
      self._timer.cancel()
    if waiter is not None and not waiter.done():
      waiter.set_exception(exc)

  def _timed_out(self) -> None:
    self._fail(TimeoutError("request timed out"))
    self.close()

  def close(self) -> None:
    if self._transport is not None:
      self._transport.close()
      self._transport = None

  async def request(self, payload: bytes) -> tuple[int, bytes]:
    if self._transport is None or self._transport.is_closing():
      await self.connect()
    loop = asyncio.get_running_loop()
    self._waiter = loop.create_future()
    self._body = []
    self._timer = loop.call_later(self._timeout_s, self._timed_out)
    self._transport.write(payload)
    return await self._waiter
