"""A gRPC server for unary calls, on asyncio, speaking HTTP/2 frames itself.

Why not grpcio's server: on this project's 2-core reference host, grpcio's
Python layer costs 400+ us of CPU per call (sync server, about twice that on
grpc.aio), several times what a batched model run costs per row, so it capped
the server's throughput whatever batching did. Every method of upstream's
PredictionService and ModelService is unary, and a unary call over HTTP/2 is
small: one HEADERS (+ CONTINUATION) and DATA in, one HEADERS + DATA + trailers
out. Handling those frames on the event loop, with responses of one loop turn
coalesced into one write, costs a fraction of that.

Handlers register exactly as with grpcio (`add_XServicer_to_server` from the
generated `*_pb2_grpc` modules, grpc's `method_handlers_generic_handler`), and
may be coroutines (awaited on the loop, grpc.aio style) or plain functions (run
on an executor, grpc sync style). What it does not do: streaming methods
(UNIMPLEMENTED), response compression (requests may be gzip or deflate), and
server-initiated keepalive pings. TLS is asyncio's, with ALPN `h2`.

Status codes and messages for transport-level failures follow grpcio's.
"""

from __future__ import annotations

import asyncio
import base64
import collections
from collections.abc import Iterable, Sequence
import concurrent.futures
import dataclasses
import inspect
import os
import socket
import ssl
import stat
import tempfile
from typing import Any
import zlib

from absl import logging
import grpc
import hpack

from tensorflow_serving.util.grpc_h2 import frames as fr

Metadata = Sequence[tuple[str, str | bytes]]

# Receive windows we grant: per stream, and for the whole connection.
STREAM_WINDOW = 4 << 20
CONNECTION_WINDOW = 16 << 20
# Header blocks larger than this fail their call, as gRPC's default hard limit.
DEFAULT_MAX_METADATA_SIZE = 16 << 10
# Not sent to the application as invocation metadata (grpcio does the same).
_RESERVED_HEADERS = frozenset(
    (
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
    )
)
_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
_ACCEPT_ENCODING = fr.literal("grpc-accept-encoding", "identity,deflate,gzip")
_RESPONSE_HEADERS = fr.response_header_block(_ACCEPT_ENCODING)
_OK_TRAILERS = fr.literal("grpc-status", "0")


class _Abort(Exception):  # noqa: N818 (control flow, not an error)
  """Raised by ServicerContext.abort to end the call with a status."""

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(details)
    self.code = code
    self.details = details


def _status_number(code: grpc.StatusCode) -> int:
  return code.value[0]


def _encode_metadata(metadata: Metadata) -> bytes:
  block = []
  for key, value in metadata:
    key = key.lower()
    if key.endswith("-bin"):
      if isinstance(value, str):
        value = value.encode()
      value = base64.b64encode(value).rstrip(b"=")
    block.append(fr.literal(key, value))
  return b"".join(block)


class ServicerContext:
  """What a handler sees of its call; a subset of grpc.ServicerContext.

  `abort` raises from a plain function; _AsyncServicerContext's is awaited,
  as in grpc.aio.
  """

  def __init__(self, connection: _Connection, stream: _Stream):
    self._connection = connection
    self._stream = stream
    self._code: grpc.StatusCode | None = None
    self._details = ""
    self.initial_metadata: Metadata = ()
    self.trailing_metadata: Metadata = ()

  def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
    out = []
    for name, value in self._stream.headers:
      if name[:1] == b":" or name in _RESERVED_HEADERS:
        continue
      key = name.decode("latin-1")
      if key.endswith("-bin"):
        out.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
      else:
        out.append((key, value.decode("latin-1")))
    return tuple(out)

  def peer(self) -> str:
    return self._connection.peer

  def time_remaining(self) -> float | None:
    deadline = self._stream.deadline
    if deadline is None:
      return None
    return max(0.0, deadline - self._connection.loop.time())

  def is_active(self) -> bool:
    return not self._stream.finished

  def cancelled(self) -> bool:
    return self._stream.finished and self._stream.cancelled

  def set_code(self, code: grpc.StatusCode) -> None:
    self._code = code

  def set_details(self, details: str) -> None:
    self._details = details

  def code(self) -> grpc.StatusCode | None:
    return self._code

  def details(self) -> str:
    return self._details

  def set_trailing_metadata(self, metadata: Metadata) -> None:
    self.trailing_metadata = tuple(metadata)

  def set_compression(self, compression: Any) -> None:
    """Responses are never compressed; accepted for grpcio compatibility."""

  def disable_next_message_compression(self) -> None:
    """Responses are never compressed."""

  def abort(
      self,
      code: grpc.StatusCode,
      details: str = "",
      trailing_metadata: Metadata = (),
  ):
    if trailing_metadata:
      self.trailing_metadata = tuple(trailing_metadata)
    raise _Abort(code, details)

  def send_initial_metadata(self, metadata: Metadata) -> None:
    self.initial_metadata = tuple(metadata)


class _AsyncServicerContext(ServicerContext):
  """grpc.aio's flavour: abort and send_initial_metadata are coroutines."""

  async def abort(
      self,
      code: grpc.StatusCode,
      details: str = "",
      trailing_metadata: Metadata = (),
  ):
    super().abort(code, details, trailing_metadata)

  async def send_initial_metadata(self, metadata: Metadata) -> None:
    super().send_initial_metadata(metadata)


@dataclasses.dataclass(frozen=True)
class _Method:
  handler: Any  # grpc.RpcMethodHandler
  is_async: bool


class _HandlerCallDetails(
    collections.namedtuple(
        "_HandlerCallDetails", ("method", "invocation_metadata")
    ),
    grpc.HandlerCallDetails,
):
  pass


class _Stream:
  """One call: its request as it arrives, then its response as it leaves."""

  __slots__ = (
      "id",
      "headers",
      "path",
      "encoding",
      "data",
      "size",
      "unacked",
      "send_window",
      "ended",
      "finished",
      "cancelled",
      "deadline",
      "timer",
      "task",
      "context",
      "pending",
      "trailers",
      "headers_sent",
  )

  def __init__(self, stream_id: int, headers: list, send_window: int):
    self.id = stream_id
    self.headers = headers
    self.path = b""
    self.encoding = b"identity"  # grpc-encoding of the request message
    self.data: list[bytes] = []
    self.size = 0
    self.unacked = 0  # received bytes not yet returned by WINDOW_UPDATE
    self.send_window = send_window
    self.ended = False  # the client sent END_STREAM
    self.finished = False  # we sent END_STREAM or RST_STREAM
    self.cancelled = False
    self.deadline: float | None = None
    self.timer: asyncio.TimerHandle | None = None
    self.task: asyncio.Future | None = None
    self.context: ServicerContext | None = None
    self.pending: memoryview | None = None  # response DATA awaiting window
    self.trailers = b""
    self.headers_sent = False


def _parse_timeout(value: bytes) -> float | None:
  try:
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]
  except (ValueError, KeyError, IndexError):
    return None


class _ConnectionError(Exception):

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code


class _Connection(asyncio.Protocol):
  """One client connection: HTTP/2 state, flow control and its calls."""

  def __init__(self, server: Server):
    self._server = server
    self.loop = server.loop
    self.peer = ""
    self._transport: asyncio.Transport | None = None
    self._buffer = b""
    self._preface = False
    # Oversized metadata fails its call (below), not the whole connection.
    self._decoder = hpack.Decoder(max_header_list_size=1 << 24)
    self._stateless_blocks: dict[bytes, tuple[list, int]] = {}
    self._streams: dict[int, _Stream] = {}
    self._last_stream = 0
    self._continuation: tuple[int, int, list[bytes]] | None = None
    self._peer_max_frame = fr.DEFAULT_MAX_FRAME
    self._peer_window = fr.DEFAULT_WINDOW  # initial window of our streams
    self._send_window = fr.DEFAULT_WINDOW  # the connection's, for our DATA
    self._unacked = 0
    self._blocked: dict[int, _Stream] = {}
    self._out: list[bytes] = []
    self._flush_handle: asyncio.Handle | None = None
    self._going_away = False
    self.closed: asyncio.Future = self.loop.create_future()

  # asyncio.Protocol

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    self._transport = transport  # type: ignore[assignment]
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
      family = "ipv6" if ":" in str(peer[0]) else "ipv4"
      self.peer = f"{family}:{peer[0]}:{peer[1]}"
    else:
      self.peer = f"unix:{peer or ''}"
    ours = {fr.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW}
    if self._server.max_concurrent_streams:
      ours[fr.SETTINGS_MAX_CONCURRENT_STREAMS] = (
          self._server.max_concurrent_streams
      )
    self._out.append(
        fr.settings(ours)
        + fr.window_update(0, CONNECTION_WINDOW - fr.DEFAULT_WINDOW)
    )
    self._server.connections.add(self)
    if self._server.stopping:
      self.go_away()

  def connection_lost(self, exc: Exception | None) -> None:
    self._transport = None
    for stream in list(self._streams.values()):
      self._drop(stream)
    self._blocked.clear()
    self._server.connections.discard(self)
    if not self.closed.done():
      self.closed.set_result(None)

  def pause_writing(self) -> None:
    # The client is not reading its responses: stop taking requests.
    if self._transport is not None:
      self._transport.pause_reading()

  def resume_writing(self) -> None:
    if self._transport is not None:
      self._transport.resume_reading()

  def data_received(self, data: bytes) -> None:
    buffer = self._buffer + data if self._buffer else data
    pos = 0
    try:
      if not self._preface:
        if len(buffer) < len(fr.PREFACE):
          if not fr.PREFACE.startswith(buffer):
            raise _ConnectionError(fr.PROTOCOL_ERROR, "not HTTP/2")
          self._buffer = buffer
          return
        if not buffer.startswith(fr.PREFACE):
          raise _ConnectionError(fr.PROTOCOL_ERROR, "not HTTP/2")
        self._preface = True
        pos = len(fr.PREFACE)
      end = len(buffer)
      unpack = fr.HEADER.unpack_from
      while end - pos >= 9:
        high, low, frame_type, flags, stream_id = unpack(buffer, pos)
        length = high << 16 | low
        if length > fr.DEFAULT_MAX_FRAME:
          raise _ConnectionError(fr.FRAME_SIZE_ERROR, "frame too large")
        stop = pos + 9 + length
        if stop > end:
          break
        payload = buffer[pos + 9 : stop]
        pos = stop
        stream_id &= fr.MAX_STREAM_ID
        if self._continuation is not None and frame_type != fr.CONTINUATION:
          raise _ConnectionError(fr.PROTOCOL_ERROR, "expected CONTINUATION")
        if frame_type == fr.DATA:
          self._on_data(flags, stream_id, payload)
        elif frame_type == fr.HEADERS:
          self._on_headers(flags, stream_id, payload)
        elif frame_type == fr.CONTINUATION:
          self._on_continuation(flags, stream_id, payload)
        else:
          self._on_control(frame_type, flags, stream_id, payload)
    except _ConnectionError as exc:
      self._fail_connection(exc.code, str(exc))
      return
    self._buffer = buffer[pos:]
    self._flush()

  def eof_received(self) -> bool | None:
    return None  # close our side too

  # Frames in

  def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
    self._unacked += len(payload)
    if self._unacked >= CONNECTION_WINDOW // 2:
      self._out.append(fr.window_update(0, self._unacked))
      self._unacked = 0
    stream = self._streams.get(stream_id)
    if stream is None or stream.ended:
      if stream_id == 0 or stream_id > self._last_stream:
        raise _ConnectionError(fr.PROTOCOL_ERROR, "DATA on an idle stream")
      return  # a stream we already ended; frames in flight are ignored
    if flags & fr.FLAG_PADDED:
      if not payload or payload[0] >= len(payload):
        raise _ConnectionError(fr.PROTOCOL_ERROR, "bad padding")
      received = len(payload)
      payload = payload[1 : len(payload) - payload[0]]
    else:
      received = len(payload)
    stream.data.append(payload)
    stream.size += len(payload)
    limit = self._server.max_receive_message_length
    if limit is not None and stream.size > limit + 5:
      self._finish(
          stream,
          grpc.StatusCode.RESOURCE_EXHAUSTED,
          f"Received message larger than max ({stream.size - 5} vs. "
          f"{limit})",
      )
      return
    if flags & fr.FLAG_END_STREAM:
      stream.ended = True
      self._dispatch(stream)
      return
    stream.unacked += received
    if stream.unacked >= STREAM_WINDOW // 2:
      self._out.append(fr.window_update(stream_id, stream.unacked))
      stream.unacked = 0

  def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
    if stream_id == 0 or not stream_id & 1:
      raise _ConnectionError(fr.PROTOCOL_ERROR, "bad stream id for HEADERS")
    if flags & fr.FLAG_PADDED:
      if not payload or payload[0] >= len(payload):
        raise _ConnectionError(fr.PROTOCOL_ERROR, "bad padding")
      payload = payload[1 : len(payload) - payload[0]]
    if flags & fr.FLAG_PRIORITY:
      payload = payload[5:]
    if flags & fr.FLAG_END_HEADERS:
      self._on_header_block(flags, stream_id, payload)
    else:
      self._continuation = (stream_id, flags, [payload])

  def _on_continuation(
      self, flags: int, stream_id: int, payload: bytes
  ) -> None:
    if self._continuation is None or self._continuation[0] != stream_id:
      raise _ConnectionError(fr.PROTOCOL_ERROR, "unexpected CONTINUATION")
    self._continuation[2].append(payload)
    if flags & fr.FLAG_END_HEADERS:
      _, first_flags, parts = self._continuation
      self._continuation = None
      self._on_header_block(first_flags, stream_id, b"".join(parts))

  def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
    headers, metadata_size = self._decode_headers(block)
    stream = self._streams.get(stream_id)
    if stream is not None:  # trailers from the client end its request
      if not flags & fr.FLAG_END_STREAM:
        raise _ConnectionError(fr.PROTOCOL_ERROR, "HEADERS without END_STREAM")
      if not stream.ended:
        stream.ended = True
        self._dispatch(stream)
      return
    if stream_id <= self._last_stream:
      return  # a stream we already ended
    self._last_stream = stream_id
    limit = self._server.max_concurrent_streams
    if self._going_away or (limit and len(self._streams) >= limit):
      self._out.append(fr.rst_stream(stream_id, fr.REFUSED_STREAM))
      return
    stream = _Stream(stream_id, headers, self._peer_window)
    self._streams[stream_id] = stream
    method = content_type = None
    # The one pass over the request's headers; the call reads these later.
    for name, value in headers:
      if name == b":path":
        stream.path = value
      elif name == b":method":
        method = value
      elif name == b"grpc-encoding":
        stream.encoding = value
      elif name == b"content-type":
        content_type = value
      elif name == b"grpc-timeout":
        timeout = _parse_timeout(value)
        if timeout is not None:
          stream.deadline = self.loop.time() + timeout
          stream.timer = self.loop.call_at(
              stream.deadline, self._expire, stream
          )
    if metadata_size > self._server.max_metadata_size:
      self._finish(
          stream,
          grpc.StatusCode.RESOURCE_EXHAUSTED,
          f"received metadata size exceeds hard limit "
          f"({metadata_size} vs. {self._server.max_metadata_size})",
      )
    elif method != b"POST":
      self._http_error(stream, b"405")
    elif content_type is None or not content_type.startswith(
        b"application/grpc"
    ):
      self._http_error(stream, b"415")
    elif flags & fr.FLAG_END_STREAM:
      stream.ended = True
      self._dispatch(stream)

  def _decode_headers(self, block: bytes) -> list:
    """Decodes a header block, reusing the result for a repeated stateless one.

    HPACK is stateful, so every block is decoded in order. But while the
    dynamic table is empty, a block that leaves it empty (literals that are
    never indexed, static references) decodes the same every time; clients
    that send such blocks then cost one dict lookup per request instead of a
    pure-Python decode.
    """
    decoder = self._decoder
    table = decoder.header_table
    stateless = not table.dynamic_entries
    if stateless:
      cached = self._stateless_blocks.get(block)
      if cached is not None:
        return cached
    table_size = table.maxsize
    try:
      headers = decoder.decode(block, raw=True)
    except Exception as exc:  # hpack raises several types
      raise _ConnectionError(fr.COMPRESSION_ERROR, str(exc)) from exc
    # Metadata size as HTTP/2 counts it (RFC 9113 section 6.5.2).
    size = sum(len(name) + len(value) + 32 for name, value in headers)
    decoded = (headers, size)
    if (
        stateless
        and not table.dynamic_entries
        and table.maxsize == table_size
        and len(self._stateless_blocks) < 64
    ):
      self._stateless_blocks[block] = decoded
    return decoded

  def _on_control(
      self, frame_type: int, flags: int, stream_id: int, payload: bytes
  ) -> None:
    if frame_type == fr.SETTINGS:
      if stream_id:
        raise _ConnectionError(fr.PROTOCOL_ERROR, "SETTINGS on a stream")
      if flags & fr.FLAG_ACK:
        return
      if len(payload) % 6:
        raise _ConnectionError(fr.FRAME_SIZE_ERROR, "bad SETTINGS length")
      for offset in range(0, len(payload), 6):
        key, value = fr.SETTING.unpack_from(payload, offset)
        if key == fr.SETTINGS_INITIAL_WINDOW_SIZE:
          if value > fr.MAX_WINDOW:
            raise _ConnectionError(fr.FLOW_CONTROL_ERROR, "window too large")
          delta = value - self._peer_window
          self._peer_window = value
          for stream in self._streams.values():
            stream.send_window += delta
        elif key == fr.SETTINGS_MAX_FRAME_SIZE:
          if not fr.DEFAULT_MAX_FRAME <= value < 1 << 24:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE")
          self._peer_max_frame = value
      self._out.append(fr.frame(fr.SETTINGS, fr.FLAG_ACK, 0))
      self._pump()
    elif frame_type == fr.PING:
      if len(payload) != 8:
        raise _ConnectionError(fr.FRAME_SIZE_ERROR, "bad PING length")
      if not flags & fr.FLAG_ACK:
        self._out.append(fr.frame(fr.PING, fr.FLAG_ACK, 0, payload))
    elif frame_type == fr.WINDOW_UPDATE:
      if len(payload) != 4:
        raise _ConnectionError(fr.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
      increment = fr.U32.unpack(payload)[0] & fr.MAX_WINDOW
      if stream_id == 0:
        self._send_window += increment
      else:
        stream = self._streams.get(stream_id)
        if stream is None:
          return
        stream.send_window += increment
      self._pump()
    elif frame_type == fr.RST_STREAM:
      stream = self._streams.get(stream_id)
      if stream is not None:
        stream.cancelled = True
        self._drop(stream)
    elif frame_type == fr.GOAWAY:
      self._going_away = True
      if not self._streams:
        self._close()
    elif frame_type == fr.PUSH_PROMISE:
      raise _ConnectionError(fr.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
    # PRIORITY and unknown frame types are ignored, as RFC 9113 asks.

  # Calls

  def _dispatch(self, stream: _Stream) -> None:
    """Runs the call once its request has fully arrived."""
    method = self._server.lookup(stream.path)
    if method is None:
      self._finish(
          stream,
          grpc.StatusCode.UNIMPLEMENTED,
          f"Method not found: {stream.path.decode('latin-1')}",
      )
      return
    handler = method.handler
    if handler.request_streaming or handler.response_streaming:
      self._finish(
          stream,
          grpc.StatusCode.UNIMPLEMENTED,
          "Streaming methods are not supported by this server",
      )
      return
    body = stream.data[0] if len(stream.data) == 1 else b"".join(stream.data)
    stream.data = []
    try:
      message = self._unframe(stream, body)
      request = handler.request_deserializer(message)
    except _Abort as exc:
      self._finish(stream, exc.code, exc.details)
      return
    except Exception:  # pylint: disable=broad-except
      self._finish(
          stream, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
      )
      return
    if method.is_async:
      context = _AsyncServicerContext(self, stream)
      task = self.loop.create_task(handler.unary_unary(request, context))
    else:
      context = ServicerContext(self, stream)
      task = self.loop.run_in_executor(
          self._server.executor, handler.unary_unary, request, context
      )
    stream.context = context
    stream.task = task
    task.add_done_callback(lambda done: self._on_result(stream, handler, done))

  def _unframe(self, stream: _Stream, body: bytes) -> bytes:
    if len(body) < 5:
      raise _Abort(
          grpc.StatusCode.INTERNAL,
          "Expected one request message, received none",
      )
    compressed = body[0]
    length = fr.U32.unpack_from(body, 1)[0]
    if length != len(body) - 5:
      raise _Abort(
          grpc.StatusCode.INTERNAL,
          "Expected one request message, received a malformed one",
      )
    message = body[5:]
    if compressed:
      encoding = stream.encoding
      try:
        if encoding == b"gzip":
          message = zlib.decompress(message, wbits=31)
        elif encoding == b"deflate":
          message = zlib.decompress(message)
        else:
          raise _Abort(
              grpc.StatusCode.UNIMPLEMENTED,
              "Compression algorithm "
              f"'{encoding.decode('latin-1')}' is not supported",
          )
      except zlib.error as exc:
        raise _Abort(
            grpc.StatusCode.INTERNAL, f"Failed to decompress the request: {exc}"
        ) from exc
    limit = self._server.max_receive_message_length
    if limit is not None and len(message) > limit:
      raise _Abort(
          grpc.StatusCode.RESOURCE_EXHAUSTED,
          f"Received message larger than max ({len(message)} vs. " f"{limit})",
      )
    return message

  def _on_result(
      self, stream: _Stream, handler: Any, done: asyncio.Future
  ) -> None:
    if stream.finished or done.cancelled():
      return
    context = stream.context
    exc = done.exception()
    if isinstance(exc, _Abort):
      self._finish(stream, exc.code, exc.details)
    elif exc is not None:
      logging.error(
          "Exception calling application: %r",
          exc,
          exc_info=(type(exc), exc, exc.__traceback__),
      )
      self._finish(
          stream,
          grpc.StatusCode.UNKNOWN,
          f"Exception calling application: {exc}",
      )
    elif context._code not in (None, grpc.StatusCode.OK):  # pylint: disable=protected-access
      self._finish(stream, context._code, context._details)  # pylint: disable=protected-access
    else:
      try:
        payload = handler.response_serializer(done.result())
      except Exception:  # pylint: disable=broad-except
        self._finish(
            stream, grpc.StatusCode.INTERNAL, "Failed to serialize response!"
        )
        return
      self._respond(stream, payload)
    self._schedule_flush()

  def _respond(self, stream: _Stream, payload: bytes) -> None:
    context = stream.context
    headers = _RESPONSE_HEADERS
    trailers = _OK_TRAILERS
    if context is not None:
      if context.initial_metadata:
        headers += _encode_metadata(context.initial_metadata)
      if context.trailing_metadata:
        trailers += _encode_metadata(context.trailing_metadata)
    message = fr.grpc_message(payload)
    size = len(message)
    max_frame = self._peer_max_frame
    out = fr.header_frames(stream.id, headers, False, max_frame)
    stream.headers_sent = True
    if (
        size <= max_frame
        and size <= self._send_window
        and (size <= stream.send_window)
    ):
      self._send_window -= size
      self._out.append(
          out
          + fr.frame(fr.DATA, 0, stream.id, message)
          + fr.header_frames(stream.id, trailers, True, max_frame)
      )
      self._close_stream(stream)
      return
    self._out.append(out)
    stream.pending = memoryview(message)
    stream.trailers = trailers
    self._blocked[stream.id] = stream
    self._pump()

  def _pump(self) -> None:
    """Sends response DATA that waited for flow-control window."""
    for stream in list(self._blocked.values()):
      pending = stream.pending
      while pending and self._send_window > 0 and stream.send_window > 0:
        size = min(
            len(pending),
            self._send_window,
            stream.send_window,
            self._peer_max_frame,
        )
        self._out.append(fr.frame(fr.DATA, 0, stream.id, bytes(pending[:size])))
        pending = pending[size:]
        self._send_window -= size
        stream.send_window -= size
      stream.pending = pending
      if pending:
        if self._send_window <= 0:
          break
        continue
      del self._blocked[stream.id]
      self._out.append(
          fr.header_frames(
              stream.id, stream.trailers, True, self._peer_max_frame
          )
      )
      self._close_stream(stream)
    self._schedule_flush()

  def _finish(
      self, stream: _Stream, code: grpc.StatusCode, details: str
  ) -> None:
    """Ends a call with a non-OK status (trailers-only when possible)."""
    if stream.finished:
      return
    block = b"" if stream.headers_sent else _RESPONSE_HEADERS
    block += fr.literal("grpc-status", str(_status_number(code)))
    if details:
      block += fr.literal("grpc-message", fr.percent_encode(details))
    context = stream.context
    if context is not None and context.trailing_metadata:
      block += _encode_metadata(context.trailing_metadata)
    self._blocked.pop(stream.id, None)
    self._out.append(
        fr.header_frames(stream.id, block, True, self._peer_max_frame)
    )
    if not stream.ended:
      # We answered before the request ended; the client may stop sending.
      self._out.append(fr.rst_stream(stream.id, fr.NO_ERROR))
    self._close_stream(stream)
    self._schedule_flush()

  def _http_error(self, stream: _Stream, http_status: bytes) -> None:
    block = fr.literal_indexed_name(8, http_status)  # :status
    self._out.append(
        fr.header_frames(stream.id, block, True, self._peer_max_frame)
    )
    if not stream.ended:
      self._out.append(fr.rst_stream(stream.id, fr.NO_ERROR))
    self._close_stream(stream)

  def _expire(self, stream: _Stream) -> None:
    stream.timer = None
    if not stream.finished:
      self._finish(
          stream, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"
      )
      self._flush()

  def _close_stream(self, stream: _Stream) -> None:
    stream.finished = True
    self._streams.pop(stream.id, None)
    if stream.timer is not None:
      stream.timer.cancel()
      stream.timer = None
    task = stream.task
    if task is not None and not task.done():
      task.cancel()
    if self._going_away and not self._streams:
      self._schedule_flush()
      self.loop.call_soon(self._close)

  def _drop(self, stream: _Stream) -> None:
    """Forgets a call without answering it (RST_STREAM, connection lost)."""
    self._blocked.pop(stream.id, None)
    self._close_stream(stream)

  # Output

  def _schedule_flush(self) -> None:
    if self._flush_handle is None and self._out:
      self._flush_handle = self.loop.call_soon(self._flush)

  def _flush(self) -> None:
    if self._flush_handle is not None:
      self._flush_handle.cancel()
      self._flush_handle = None
    if not self._out:
      return
    out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
    self._out = []
    if self._transport is not None:
      self._transport.write(out)

  def _fail_connection(self, code: int, message: str) -> None:
    logging.warning("gRPC connection from %s failed: %s", self.peer, message)
    self._out.append(fr.goaway(self._last_stream, code, message.encode()))
    self._flush()
    self._close()

  def _close(self) -> None:
    self._flush()
    if self._transport is not None:
      self._transport.close()

  def go_away(self) -> None:
    """Takes no new calls; closes once the calls in flight are answered."""
    if self._going_away:
      return
    self._going_away = True
    self._out.append(fr.goaway(self._last_stream, fr.NO_ERROR))
    if self._streams:
      self._flush()
    else:
      self._close()

  def abort(self) -> None:
    if self._transport is not None:
      self._transport.abort()


def ssl_server_context(
    cert_chain: str,
    private_key: str,
    root_certificates: str | None,
    require_client_auth: bool,
) -> ssl.SSLContext:
  """A TLS server context from PEM text, negotiating `h2` as gRPC needs."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  context.minimum_version = ssl.TLSVersion.TLSv1_2
  # load_cert_chain reads only files: the PEM goes through a private one.
  with tempfile.TemporaryDirectory() as private_dir:
    path = os.path.join(private_dir, "server.pem")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as pem:
      pem.write(cert_chain + "\n" + private_key)
    context.load_cert_chain(path)
  if root_certificates:
    context.load_verify_locations(cadata=root_certificates)
  context.verify_mode = (
      ssl.CERT_REQUIRED
      if require_client_auth
      else ssl.CERT_OPTIONAL
      if root_certificates
      else ssl.CERT_NONE
  )
  context.set_alpn_protocols(["h2"])
  return context


class Server:
  """A grpc.Server look-alike for unary calls, run on the current event loop.

  Bind addresses with `add_insecure_port` / `add_secure_port` (as grpc's,
  `host:port` or `unix:path`; they bind at once and return the port), then
  `start`; `stop(grace)` lets calls in flight finish.
  """

  def __init__(
      self,
      executor: concurrent.futures.Executor | None = None,
      max_receive_message_length: int | None = None,
      max_concurrent_streams: int | None = None,
      max_metadata_size: int | None = DEFAULT_MAX_METADATA_SIZE,
  ):
    self.loop = asyncio.get_running_loop()
    self.executor = executor
    self.max_receive_message_length = max_receive_message_length
    self.max_concurrent_streams = max_concurrent_streams
    self.max_metadata_size = (
        max_metadata_size if max_metadata_size is not None else fr.MAX_WINDOW
    )
    self.connections: set[_Connection] = set()
    self.stopping = False
    self._generic: list[Any] = []
    self._methods: dict[bytes, _Method | None] = {}
    self._listeners: list[asyncio.AbstractServer] = []
    self._serving = False
    # Listeners on sockets bound elsewhere, by the socket's fd.
    self._adopted: dict[int, asyncio.AbstractServer] = {}

  # Registration, as grpc.Server.

  def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
    self._generic.extend(handlers)
    self._methods.clear()

  def add_registered_method_handlers(
      self, service: str, handlers: dict[str, Any]
  ) -> None:
    self.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, handlers),)
    )

  def lookup(self, path: bytes) -> _Method | None:
    try:
      return self._methods[path]
    except KeyError:
      pass
    name = path.decode("latin-1")
    details = _HandlerCallDetails(name, ())
    method = None
    for generic in self._generic:
      handler = generic.service(details)
      if handler is not None:
        method = _Method(
            handler, inspect.iscoroutinefunction(handler.unary_unary)
        )
        break
    if len(self._methods) < 1024:  # unknown paths must not grow it forever
      self._methods[path] = method
    return method

  # Listening.

  async def add_insecure_port(self, address: str) -> int:
    return await self._bind(address, None)

  async def add_secure_port(
      self, address: str, ssl_context: ssl.SSLContext
  ) -> int:
    return await self._bind(address, ssl_context)

  async def _bind(self, address: str, context: ssl.SSLContext | None) -> int:
    factory = lambda: _Connection(self)
    if address.startswith("unix:"):
      path = address[len("unix:") :]
      try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
          os.unlink(path)  # a stale socket from an earlier run, as grpc does
      except FileNotFoundError:
        pass
      listener = await self.loop.create_unix_server(
          factory, path, ssl=context, start_serving=False
      )
      self._listeners.append(listener)
      return 0
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or None
    if host in ("0.0.0.0", "::", "*"):
      host = host if host != "*" else None
    listener = await self.loop.create_server(
        factory,
        host,
        int(port),
        ssl=context,
        reuse_address=True,
        start_serving=False,
    )
    self._listeners.append(listener)
    return listener.sockets[0].getsockname()[1]

  async def add_listening_socket(
      self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None
  ) -> None:
    """Also accepts on `sock`, bound elsewhere (before or after start).

    model_servers/workers: worker processes share sockets their supervisor
    bound. Closing the listener closes `sock` (pass a dup to keep the fd).
    """
    factory = lambda: _Connection(self)
    create = (
        self.loop.create_unix_server
        if sock.family == socket.AF_UNIX
        else self.loop.create_server
    )
    listener = await create(
        factory, sock=sock, ssl=ssl_context, start_serving=self._serving
    )
    self._listeners.append(listener)
    self._adopted[sock.fileno()] = listener

  def remove_listening_socket(self, sock: socket.socket) -> None:
    """Stops accepting on a socket of add_listening_socket; closes it."""
    listener = self._adopted.pop(sock.fileno(), None)
    if listener is not None:
      self._listeners.remove(listener)
      listener.close()

  async def start(self) -> None:
    self._serving = True
    for listener in self._listeners:
      await listener.start_serving()

  async def stop(self, grace: float | None) -> None:
    """Stops accepting; calls in flight get `grace` seconds, then are cut."""
    self.stopping = True
    for listener in self._listeners:
      listener.close()
    connections = list(self.connections)
    for connection in connections:
      connection.go_away()
    if connections and grace:
      await asyncio.wait([c.closed for c in connections], timeout=grace)
    for connection in list(self.connections):
      connection.abort()
