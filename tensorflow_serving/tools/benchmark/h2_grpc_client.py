"""The project's own light gRPC client: unary calls over raw HTTP/2 frames.

The figures that count come from the clients users run (the official grpcio
client and h2load, see grpcio_client and h2load); this one is a further
column, a hint of what the server does when the generator costs almost
nothing: grpcio spends 100-300 us of client CPU per call on a small host, as
much as the server under test spends on a request. This client does the
least a unary call needs: a constant HPACK header block (literals only, so it
never depends on the server's table), one HEADERS + DATA write per call, and
a frame loop that hands each stream its message and trailers. It sets the
peer's HPACK table size to 0, so header blocks carry no state and identical
trailers can be recognised by their bytes; hpack decodes only blocks not
seen before (errors, mostly). Flow control is honoured both ways.

Unary calls only, no TLS, no compression, no CONTINUATION on send: enough to
load a model server, not a general gRPC client.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from tensorflow_serving.util.net.grpc_h2 import frames as fr

_RECEIVE_WINDOW = 1 << 30


class GrpcError(Exception):
  """The call failed; `status` is the grpc.StatusCode name or a frame error."""

  def __init__(self, status: str, message: str = ""):
    super().__init__(f"{status}: {message}" if message else status)
    self.status = status


class _Stream:
  __slots__ = ("waiter", "data", "block", "ends", "deadline")

  def __init__(self, waiter: asyncio.Future, deadline: float):
    self.waiter = waiter
    self.data: list[bytes] = []
    self.block: list[bytes] = []  # a header block split over CONTINUATIONs
    self.ends = False
    self.deadline = deadline


class GrpcChannel:
  """Unary calls of one method over one HTTP/2 connection, reopened as needed.

  Each TCP connection gets its own protocol object, so streams still open on
  a connection being replaced (GOAWAY, exhausted stream ids) finish there.
  """

  def __init__(self, host: str, port: int, method: str, timeout_s: float):
    self._host = host
    self._port = port
    self._block = fr.request_header_block(method, f"{host}:{port}")
    self._timeout_s = timeout_s
    self._connection: _Connection | None = None
    self._connecting: asyncio.Task | None = None

  async def connect(self) -> _Connection:
    """Opens a new connection; concurrent callers share the one underway."""
    if self._connecting is None:
      loop = asyncio.get_running_loop()
      self._connecting = loop.create_task(
          loop.create_connection(
              lambda: _Connection(self._block, self._timeout_s),
              self._host,
              self._port,
          )
      )
    try:
      _, connection = await asyncio.shield(self._connecting)
    finally:
      if self._connecting is not None and self._connecting.done():
        self._connecting = None
    self._connection = connection
    return connection

  async def unary(self, message: bytes) -> bytes:
    """Sends one framed gRPC `message`; returns the response message.

    Raises GrpcError with the status name (or the frame-level error).
    """
    connection = self._connection
    if connection is None or not connection.usable:
      if connection is not None:
        connection.drain_and_close()
      connection = await self.connect()
    return await connection.unary(message)

  def close(self) -> None:
    if self._connection is not None:
      self._connection.close()
      self._connection = None


class _Connection(asyncio.Protocol):
  """One HTTP/2 connection and the calls in flight on it."""

  def __init__(self, block: bytes, timeout_s: float):
    self._block = block
    self._timeout_s = timeout_s
    self._transport: Any = None
    self._buffer = b""
    self._streams: dict[int, _Stream] = {}
    self._next_id = 1
    self._going_away = False
    self._closing = False
    self._send_window = 65535  # the connection's, for our DATA
    self._stream_window = 65535  # each new stream's
    self._max_frame = 16384
    self._pending: collections.deque[tuple[int, bytes]] = collections.deque()
    self._consumed = 0
    self._statuses: dict[bytes, str | None] = {}
    self._out: list[bytes] = []
    self._sweeper: asyncio.TimerHandle | None = None

  @property
  def usable(self) -> bool:
    return (
        self._transport is not None
        and not self._going_away
        and not self._closing
        and self._next_id < fr.MAX_STREAM_ID
    )

  def connection_made(self, transport: Any) -> None:
    self._transport = transport
    settings = fr.settings(
        {
            fr.SETTINGS_HEADER_TABLE_SIZE: 0,
            fr.SETTINGS_ENABLE_PUSH: 0,
            fr.SETTINGS_INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
        }
    )
    transport.write(
        fr.PREFACE
        + settings
        + fr.window_update(0, _RECEIVE_WINDOW - fr.DEFAULT_WINDOW)
    )
    self._sweep()

  def _sweep(self) -> None:
    """Fails calls past their deadline; one timer instead of one per call."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    for stream_id in [
        sid for sid, stream in self._streams.items() if stream.deadline <= now
    ]:
      self._deadline(stream_id)
    if self._transport is not None:
      self._sweeper = loop.call_later(
          min(1.0, self._timeout_s / 4), self._sweep
      )

  def connection_lost(self, exc: Exception | None) -> None:
    self._transport = None
    self._pending.clear()
    if self._sweeper is not None:
      self._sweeper.cancel()
    self._fail_streams(
        lambda stream_id: True,
        "UNAVAILABLE",
        str(exc) if exc else "connection closed",
    )

  def close(self) -> None:
    if self._transport is not None:
      self._transport.close()

  def drain_and_close(self) -> None:
    """No new calls; close once the ones in flight are answered."""
    self._closing = True
    if not self._streams:
      self.close()

  async def unary(self, message: bytes) -> bytes:
    if len(message) > min(self._max_frame, self._stream_window):
      raise GrpcError("INTERNAL", "request larger than one DATA frame")
    loop = asyncio.get_running_loop()
    stream_id = self._next_id
    self._next_id += 2
    stream = _Stream(loop.create_future(), loop.time() + self._timeout_s)
    self._streams[stream_id] = stream
    self._write(
        fr.frame(fr.HEADERS, fr.FLAG_END_HEADERS, stream_id, self._block)
    )
    data = fr.frame(fr.DATA, fr.FLAG_END_STREAM, stream_id, message)
    if self._pending or len(message) > self._send_window:
      self._pending.append((len(message), data))
    else:
      self._send_window -= len(message)
      self._write(data)
    return await stream.waiter

  def _write(self, frame: bytes) -> None:
    """Queues a frame; all queued in one loop iteration go in one send()."""
    self._out.append(frame)
    if len(self._out) == 1:
      asyncio.get_running_loop().call_soon(self._flush)

  def _flush(self) -> None:
    out, self._out = self._out, []
    if self._transport is not None and out:
      self._transport.write(b"".join(out))

  def _deadline(self, stream_id: int) -> None:
    stream = self._streams.pop(stream_id, None)
    if stream is None:
      return
    if self._closing and not self._streams:
      self.close()
    elif self._transport is not None:
      self._transport.write(fr.rst_stream(stream_id, fr.CANCEL))
    if not stream.waiter.done():
      stream.waiter.set_exception(GrpcError("DEADLINE_EXCEEDED"))

  def _fail_streams(
      self, which: Callable[[int], bool], status: str, message: str
  ) -> None:
    for stream_id in [s for s in self._streams if which(s)]:
      stream = self._streams.pop(stream_id)
      if not stream.waiter.done():
        stream.waiter.set_exception(GrpcError(status, message))
    if self._closing and not self._streams:
      self.close()

  def _flush_pending(self) -> None:
    while self._pending and self._pending[0][0] <= self._send_window:
      size, data = self._pending.popleft()
      self._send_window -= size
      self._write(data)

  def data_received(self, data: bytes) -> None:
    buffer = self._buffer + data if self._buffer else data
    pos, end = 0, len(buffer)
    unpack = fr.HEADER.unpack_from
    while end - pos >= 9:
      high, low, frame_type, flags, stream_id = unpack(buffer, pos)
      stop = pos + 9 + (high << 16 | low)
      if stop > end:
        break
      payload = buffer[pos + 9 : stop]
      pos = stop
      stream_id &= fr.MAX_STREAM_ID
      if frame_type == fr.DATA:
        self._on_data(flags, stream_id, payload)
      elif frame_type == fr.HEADERS or frame_type == fr.CONTINUATION:
        self._on_headers(frame_type, flags, stream_id, payload)
      else:
        self._on_control(frame_type, flags, stream_id, payload)
    self._buffer = buffer[pos:]

  def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
    self._consumed += len(payload)
    if self._consumed >= _RECEIVE_WINDOW // 2 and self._transport is not None:
      self._transport.write(fr.window_update(0, self._consumed))
      self._consumed = 0
    stream = self._streams.get(stream_id)
    if stream is None:
      return
    if flags & fr.FLAG_PADDED:
      payload = payload[1 : len(payload) - payload[0]]
    stream.data.append(payload)
    if flags & fr.FLAG_END_STREAM:
      self._finish(stream_id, b"")

  def _on_headers(
      self, frame_type: int, flags: int, stream_id: int, payload: bytes
  ) -> None:
    stream = self._streams.get(stream_id)
    if stream is None:
      return
    if frame_type == fr.HEADERS:
      if flags & fr.FLAG_PADDED:
        payload = payload[1 : len(payload) - payload[0]]
      if flags & fr.FLAG_PRIORITY:
        payload = payload[5:]
      stream.block = [payload]
      # A block split over CONTINUATIONs ends the stream if its HEADERS did.
      stream.ends = bool(flags & fr.FLAG_END_STREAM)
    else:
      stream.block.append(payload)
    if not flags & fr.FLAG_END_HEADERS:
      return
    # Response headers leave the stream open; the trailers end it.
    if stream.ends:
      self._finish(stream_id, b"".join(stream.block))
    else:
      stream.block = []

  def _on_control(
      self, frame_type: int, flags: int, stream_id: int, payload: bytes
  ) -> None:
    transport = self._transport
    if frame_type == fr.SETTINGS and not flags & fr.FLAG_ACK:
      for offset in range(0, len(payload) - 5, 6):
        key, value = fr.SETTING.unpack_from(payload, offset)
        if key == fr.SETTINGS_INITIAL_WINDOW_SIZE:
          self._stream_window = value
        elif key == fr.SETTINGS_MAX_FRAME_SIZE:
          self._max_frame = value
      if transport is not None:
        transport.write(fr.frame(fr.SETTINGS, fr.FLAG_ACK, 0))
    elif frame_type == fr.PING and not flags & fr.FLAG_ACK:
      if transport is not None:
        transport.write(fr.frame(fr.PING, fr.FLAG_ACK, 0, payload))
    elif frame_type == fr.WINDOW_UPDATE and stream_id == 0:
      self._send_window += fr.U32.unpack(payload)[0] & fr.MAX_STREAM_ID
      if transport is not None:
        self._flush_pending()
    elif frame_type == fr.RST_STREAM:
      code = fr.U32.unpack(payload)[0]
      self._fail_streams(
          lambda s: s == stream_id, "RST_STREAM", f"error code {code}"
      )
    elif frame_type == fr.GOAWAY:
      last = fr.U32.unpack_from(payload)[0] & fr.MAX_STREAM_ID
      self._going_away = True
      self._fail_streams(lambda s: s > last, "UNAVAILABLE", "GOAWAY")

  def _finish(self, stream_id: int, trailers: bytes) -> None:
    stream = self._streams.pop(stream_id)
    if self._closing and not self._streams:
      self.close()
    if stream.waiter.done():
      return
    body = b"".join(stream.data)
    status = self._status(trailers, body)
    if status is not None:
      stream.waiter.set_exception(GrpcError(status))
    elif (
        len(body) < 5
        or body[0] != 0
        or int.from_bytes(body[1:5], "big") != len(body) - 5
    ):
      stream.waiter.set_exception(GrpcError("INTERNAL", "bad gRPC framing"))
    else:
      stream.waiter.set_result(body[5:])

  def _status(self, trailers: bytes, body: bytes) -> str | None:
    """None for grpc-status 0, else its name; cached by the block's bytes."""
    try:
      return self._statuses[trailers]
    except KeyError:
      pass
    status: str | None
    try:
      import hpack  # pylint: disable=g-import-not-at-top

      fields = dict(hpack.Decoder().decode(trailers, raw=False))
      code = int(fields.get("grpc-status", 2))
      status = (
          None
          if code == 0
          else (
              fr.STATUS_NAMES[code]
              if code < len(fr.STATUS_NAMES)
              else str(code)
          )
      )
    except Exception:  # pylint: disable=broad-except
      # Undecodable (the peer kept a table after all): judge by the body.
      status = None if body else "UNKNOWN"
    if status is None and len(self._statuses) < 64:
      self._statuses[trailers] = None
    return status
