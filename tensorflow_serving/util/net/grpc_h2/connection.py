"""The server side of an HTTP/2 connection as a sans-IO state machine.

Bytes in (`receive_data`) become events (events.py); what the application
sends (`send_headers`, `send_data`, `send_response`, `reset_stream`)
becomes bytes out (`data_to_send`), held back by the peer's flow-control
windows. Modelled on python-hyper h2's `H2Connection`, which h2_core.py
wraps behind the same methods; this one does less (a server of unary calls:
no push, no priority, no client side) and costs less per frame, which is
what the gRPC hot path pays.

Limits are enforced here, before anything attacker-sized is decoded: a
header block's encoded size, then its decoded size (GOAWAY
ENHANCE_YOUR_CALM past either); the receive window (FLOW_CONTROL_ERROR);
MAX_CONCURRENT_STREAMS (REFUSED_STREAM); and token buckets for resets,
PINGs, SETTINGS and empty frames (GOAWAY ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import time

from absl import logging
import hpack

from tensorflow_serving.util.net import rate
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

Headers = Sequence[tuple[bytes, bytes]]

# Static-table entries (RFC 7541 appendix A) the responses use.
_STATIC_FULL = {(b":status", b"200"): 8, (b":status", b"204"): 9}
_STATIC_NAMES = {
    b":authority": 1,
    b":method": 2,
    b":path": 4,
    b":scheme": 6,
    b":status": 8,
    b"content-type": 31,
    b"content-length": 28,
    b"date": 33,
}


class _ConnectionFailedError(Exception):

  def __init__(self, code: int, message: str):
    super().__init__(message)
    self.code = code


class _Stream:
  """What the core keeps of a stream: windows, and output awaiting them."""

  __slots__ = ("send_window", "unacked", "ended", "pending", "trailers")

  def __init__(self, send_window: int):
    self.send_window = send_window
    self.unacked = 0  # received bytes acknowledged but not yet updated
    self.ended = False  # the client sent END_STREAM
    self.pending: memoryview | None = None  # our DATA awaiting window
    # Once the pending DATA is out: a header block to end the stream with,
    # or b"" to end it with an empty DATA frame (None: leave it open).
    self.trailers: bytes | None = None


def encode_headers(headers: Headers) -> bytes:
  """A header block of never-indexed literals (static names where known).

  Never touching the peer's dynamic table keeps encoding stateless.
  """
  out = []
  for name, value in headers:
    index = _STATIC_FULL.get((name, value))
    if index is not None:
      out.append(bytes([0x80 | index]))
      continue
    index = _STATIC_NAMES.get(name)
    if index is not None:
      out.append(fr.literal_indexed_name(index, value))
    else:
      out.append(fr.literal(name, value))
  return b"".join(out)


class H2Connection:
  """One server connection's HTTP/2 state. Not thread-safe; no I/O."""

  def __init__(
      self,
      limits: limits_lib.GrpcLimits = limits_lib.DEFAULT,
      clock: Callable[[], float] = time.monotonic,
      stream_window: int = 4 << 20,
  ):
    self._limits = limits
    self._stream_window = stream_window
    self._max_block = limits.max_header_block_bytes
    self._decoder = hpack.Decoder(
        max_header_list_size=limits.max_decoded_header_bytes
    )
    self._neutral_blocks: dict[bytes, tuple[list, int]] = {}
    self._bad_path_logged = False
    self._encoded: dict[tuple, bytes] = {}
    self._buffer = b""
    self._preface = False
    self._streams: dict[int, _Stream] = {}
    self._last_stream = 0
    self._continuation: tuple[int, int, list[bytes], int] | None = None
    self._peer_max_frame = fr.DEFAULT_MAX_FRAME
    self._peer_window = fr.DEFAULT_WINDOW  # initial window of our streams
    self._send_window = fr.DEFAULT_WINDOW  # the connection's, for our DATA
    self.recv_window = fr.DEFAULT_WINDOW  # what the peer may still send
    self._connection_window = fr.DEFAULT_WINDOW
    self._unacked = 0
    self._blocked: dict[int, _Stream] = {}
    self.pending_bytes = 0  # our DATA waiting for the peer's window
    self._out: list[bytes] = []
    self._sent_since_ping = True
    self.going_away = False
    self.closed = False
    self._resets = rate.TokenBucket(
        limits.reset_burst, limits.resets_per_s, clock
    )
    self._control = rate.TokenBucket(
        limits.control_burst, limits.control_frames_per_s, clock
    )

  # Setup and state.

  def initiate_connection(self, connection_window: int) -> None:
    """Queues our SETTINGS and grows the connection window to this size."""
    ours = {
        fr.SETTINGS_INITIAL_WINDOW_SIZE: self._stream_window,
        fr.SETTINGS_MAX_HEADER_LIST_SIZE: self._limits.max_metadata_size,
        fr.SETTINGS_ENABLE_PUSH: 0,
    }
    if self._limits.max_concurrent_streams < limits_lib.INT_MAX:
      ours[fr.SETTINGS_MAX_CONCURRENT_STREAMS] = (
          self._limits.max_concurrent_streams
      )
    self._out.append(fr.settings(ours))
    self.grow_connection_window(connection_window - fr.DEFAULT_WINDOW)
    self._connection_window = max(connection_window, fr.DEFAULT_WINDOW)

  def grow_connection_window(self, increment: int) -> None:
    if increment > 0:
      self._out.append(fr.window_update(0, increment))
      self.recv_window += increment

  @property
  def preface_received(self) -> bool:
    return self._preface

  @property
  def open_streams(self) -> int:
    return len(self._streams)

  @property
  def last_stream_id(self) -> int:
    return self._last_stream

  def data_to_send(self) -> bytes:
    out = self._out
    if not out:
      return b""
    self._out = []
    return out[0] if len(out) == 1 else b"".join(out)

  # Bytes in.

  def receive_data(self, data: bytes) -> list[ev.Event]:
    """Parses every complete frame in `data` (plus what was left over)."""
    if self.closed:
      return []
    events: list[ev.Event] = []
    buffer = self._buffer + data if self._buffer else data
    pos = 0
    try:
      if not self._preface:
        if len(buffer) < len(fr.PREFACE):
          if not fr.PREFACE.startswith(buffer):
            raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "not HTTP/2")
          self._buffer = buffer
          return events
        if not buffer.startswith(fr.PREFACE):
          raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "not HTTP/2")
        self._preface = True
        pos = len(fr.PREFACE)
      end = len(buffer)
      unpack = fr.HEADER.unpack_from
      while end - pos >= 9:
        high, low, frame_type, flags, stream_id = unpack(buffer, pos)
        length = high << 16 | low
        if length > fr.DEFAULT_MAX_FRAME:
          raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "frame too large")
        stop = pos + 9 + length
        if stop > end:
          break
        payload = buffer[pos + 9 : stop]
        pos = stop
        stream_id &= fr.MAX_STREAM_ID
        if self._continuation is not None and frame_type != fr.CONTINUATION:
          raise _ConnectionFailedError(
              fr.PROTOCOL_ERROR, "expected CONTINUATION"
          )
        if frame_type == fr.DATA:
          self._on_data(flags, stream_id, payload, events)
        elif frame_type == fr.HEADERS:
          self._on_headers(flags, stream_id, payload, events)
        elif frame_type == fr.CONTINUATION:
          self._on_continuation(flags, stream_id, payload, events)
        else:
          self._on_control(frame_type, flags, stream_id, payload, events)
    except _ConnectionFailedError as exc:
      self.close_connection(exc.code, str(exc).encode())
      events.append(ev.ProtocolFailure(exc.code, str(exc)))
      self._buffer = b""
      return events
    self._buffer = buffer[pos:]
    return events

  def _on_data(
      self, flags: int, stream_id: int, payload: bytes, events: list
  ) -> None:
    received = len(payload)
    self.recv_window -= received
    if self.recv_window < 0:
      raise _ConnectionFailedError(
          fr.FLOW_CONTROL_ERROR, "DATA beyond the window"
      )
    stream = self._streams.get(stream_id)
    if stream is None or stream.ended:
      if stream_id == 0 or stream_id > self._last_stream:
        raise _ConnectionFailedError(
            fr.PROTOCOL_ERROR, "DATA on an idle stream"
        )
      # A stream already ended: nobody holds its bytes, so return them.
      self._ack_connection(received)
      return
    if flags & fr.FLAG_PADDED:
      if not payload or payload[0] >= len(payload):
        raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "bad padding")
      payload = payload[1 : len(payload) - payload[0]]
    end_stream = bool(flags & fr.FLAG_END_STREAM)
    if end_stream:
      stream.ended = True
    elif not payload and not self._control.take():
      raise _ConnectionFailedError(
          fr.ENHANCE_YOUR_CALM, "too many empty frames"
      )
    events.append(ev.DataReceived(stream_id, payload, received, end_stream))

  def _on_headers(
      self, flags: int, stream_id: int, payload: bytes, events: list
  ) -> None:
    if stream_id == 0 or not stream_id & 1:
      raise _ConnectionFailedError(
          fr.PROTOCOL_ERROR, "bad stream id for HEADERS"
      )
    if flags & fr.FLAG_PADDED:
      if not payload or payload[0] >= len(payload):
        raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "bad padding")
      payload = payload[1 : len(payload) - payload[0]]
    if flags & fr.FLAG_PRIORITY:
      payload = payload[5:]
    if flags & fr.FLAG_END_HEADERS:
      self._on_header_block(flags, stream_id, payload, events)
    else:
      self._check_block_size(len(payload))
      self._continuation = (stream_id, flags, [payload], len(payload))

  def _check_block_size(self, size: int) -> None:
    if size > self._max_block:
      raise _ConnectionFailedError(
          fr.ENHANCE_YOUR_CALM,
          f"header block larger than {self._max_block} bytes",
      )

  def _on_continuation(
      self, flags: int, stream_id: int, payload: bytes, events: list
  ) -> None:
    continuation = self._continuation
    if continuation is None or continuation[0] != stream_id:
      raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "unexpected CONTINUATION")
    _, first_flags, parts, size = continuation
    size += len(payload)
    self._check_block_size(size)
    if not payload and not flags & fr.FLAG_END_HEADERS:
      if not self._control.take():
        raise _ConnectionFailedError(
            fr.ENHANCE_YOUR_CALM, "too many empty frames"
        )
    parts.append(payload)
    if flags & fr.FLAG_END_HEADERS:
      self._continuation = None
      self._on_header_block(first_flags, stream_id, b"".join(parts), events)
    else:
      self._continuation = (stream_id, first_flags, parts, size)

  def _on_header_block(
      self, flags: int, stream_id: int, block: bytes, events: list
  ) -> None:
    if len(block) > self._max_block:
      self._check_block_size(len(block))
    # Decoded even when the stream is refused: HPACK state is per connection.
    headers, size = self._decode_headers(block)
    end_stream = bool(flags & fr.FLAG_END_STREAM)
    stream = self._streams.get(stream_id)
    if stream is not None:  # trailers from the client end its request
      if not end_stream:
        raise _ConnectionFailedError(
            fr.PROTOCOL_ERROR, "HEADERS without END_STREAM"
        )
      if not stream.ended:
        stream.ended = True
        events.append(ev.StreamEnded(stream_id))
      return
    if stream_id <= self._last_stream:
      return  # a stream already closed
    self._last_stream = stream_id
    if self.going_away:
      self._out.append(fr.rst_stream(stream_id, fr.REFUSED_STREAM))
      return
    if len(self._streams) >= self._limits.max_concurrent_streams:
      self._out.append(fr.rst_stream(stream_id, fr.REFUSED_STREAM))
      if not self._resets.take():
        raise _ConnectionFailedError(
            fr.ENHANCE_YOUR_CALM, "too many refused streams"
        )
      return
    stream = _Stream(self._peer_window)
    stream.ended = end_stream
    self._streams[stream_id] = stream
    events.append(ev.RequestReceived(stream_id, headers, size, end_stream))

  def _decode_headers(self, block: bytes) -> tuple[list, int]:
    """Decodes a header block, reusing the result for a repeated neutral one.

    HPACK is stateful, so every block is decoded in order. But a block that
    leaves the dynamic table as it found it (references, literals that are
    not indexed) decodes the same again for as long as the table does not
    change. grpc C-core's blocks after the first call are such references,
    h2load's carry non-indexed literals: either way a repeated block then
    costs one dict lookup instead of a pure-Python decode (40-90 us). Any
    change to the table (an insertion, a size update) empties the cache.
    """
    cached = self._neutral_blocks.get(block)
    if cached is not None:
      return cached
    table = self._decoder.header_table
    entries = table.dynamic_entries
    before = (len(entries), table.maxsize, entries[0] if entries else None)
    try:
      headers = self._decoder.decode(block, raw=True)
    except hpack.OversizedHeaderListError as exc:
      raise _ConnectionFailedError(fr.ENHANCE_YOUR_CALM, str(exc)) from exc
    except Exception as exc:  # hpack raises several types
      raise _ConnectionFailedError(fr.COMPRESSION_ERROR, str(exc)) from exc
    # Header-list size as HTTP/2 counts it (RFC 9113 section 6.5.2).
    size = sum(len(name) + len(value) + 32 for name, value in headers)
    if not self._bad_path_logged:
      # Only here, where a block is decoded: a reused one was checked then.
      for name, value in headers:
        if name == b":path":
          if value[:1] != b"/":
            self._log_bad_path(block, value, before[0])
          break
    decoded = (headers, size)
    entries = table.dynamic_entries
    after = (len(entries), table.maxsize, entries[0] if entries else None)
    # An insertion puts a new entry first (identity tells), a size update
    # changes maxsize; an eviction only follows an insertion.
    if (
        after[0] == before[0]
        and after[1] == before[1]
        and after[2] is before[2]
    ):
      if len(self._neutral_blocks) < 64:
        self._neutral_blocks[block] = decoded
    else:
      self._neutral_blocks.clear()
    return decoded

  def _log_bad_path(self, block: bytes, path: bytes, entries_before: int):
    """Logs what decoded to a `:path` that no client sends (once).

    Such a request fails UNIMPLEMENTED ("Method not found"); the block's
    bytes and the dynamic table tell whether the client encoded it so or
    the decoding went wrong.
    """
    self._bad_path_logged = True
    table = self._decoder.header_table
    entries = [
        (name[:64], value[:64], len(value))
        for name, value in table.dynamic_entries
    ]
    # Once per connection, and at most once a minute across connections:
    # a peer that means it must not fill the log.
    logging.log_every_n_seconds(
        logging.WARNING,
        "HTTP/2 request :path %r does not start with '/'; header block "
        "(%d bytes, hex, first 2048): %s; HPACK dynamic table after it "
        "(maxsize %d, %d entries before it; name, value, value length, "
        "newest first): %r",
        60,
        path[:256],
        len(block),
        block[:2048].hex(),
        table.maxsize,
        entries_before,
        entries[:128],
    )

  def _on_control(
      self,
      frame_type: int,
      flags: int,
      stream_id: int,
      payload: bytes,
      events: list,
  ) -> None:
    if frame_type == fr.SETTINGS:
      if stream_id:
        raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "SETTINGS on a stream")
      if flags & fr.FLAG_ACK:
        return
      if len(payload) % 6:
        raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "bad SETTINGS length")
      if not self._control.take():
        raise _ConnectionFailedError(fr.ENHANCE_YOUR_CALM, "too many SETTINGS")
      for offset in range(0, len(payload), 6):
        key, value = fr.SETTING.unpack_from(payload, offset)
        if key == fr.SETTINGS_INITIAL_WINDOW_SIZE:
          if value > fr.MAX_WINDOW:
            raise _ConnectionFailedError(
                fr.FLOW_CONTROL_ERROR, "window too large"
            )
          delta = value - self._peer_window
          self._peer_window = value
          for stream in self._streams.values():
            stream.send_window += delta
        elif key == fr.SETTINGS_MAX_FRAME_SIZE:
          if not fr.DEFAULT_MAX_FRAME <= value < 1 << 24:
            raise _ConnectionFailedError(
                fr.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE"
            )
          self._peer_max_frame = value
      self._out.append(fr.frame(fr.SETTINGS, fr.FLAG_ACK, 0))
      self._pump()
    elif frame_type == fr.PING:
      if len(payload) != 8 or stream_id:
        raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "bad PING")
      if flags & fr.FLAG_ACK:
        events.append(ev.PingAckReceived(payload))
        return
      # As grpc C-core's ping strikes: pings are free while we are sending.
      if not self._sent_since_ping and not self._control.take():
        raise _ConnectionFailedError(fr.ENHANCE_YOUR_CALM, "too_many_pings")
      self._sent_since_ping = False
      self._out.append(fr.frame(fr.PING, fr.FLAG_ACK, 0, payload))
    elif frame_type == fr.WINDOW_UPDATE:
      if len(payload) != 4:
        raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "bad WINDOW_UPDATE")
      increment = fr.U32.unpack(payload)[0] & fr.MAX_WINDOW
      if stream_id == 0:
        self._send_window += increment
        if self._send_window > fr.MAX_WINDOW:
          raise _ConnectionFailedError(fr.FLOW_CONTROL_ERROR, "window overflow")
      else:
        stream = self._streams.get(stream_id)
        if stream is None:
          return
        stream.send_window += increment
      if self._blocked:
        self._pump()
    elif frame_type == fr.RST_STREAM:
      if len(payload) != 4 or not stream_id:
        raise _ConnectionFailedError(fr.PROTOCOL_ERROR, "bad RST_STREAM")
      if stream_id > self._last_stream:
        raise _ConnectionFailedError(
            fr.PROTOCOL_ERROR, "RST_STREAM on an idle stream"
        )
      stream = self._streams.pop(stream_id, None)
      if stream is not None:
        self._unblock(stream_id, stream)
        if not self._resets.take():
          raise _ConnectionFailedError(
              fr.ENHANCE_YOUR_CALM, "too many stream resets"
          )
        events.append(ev.StreamReset(stream_id, fr.U32.unpack(payload)[0]))
    elif frame_type == fr.GOAWAY:
      if len(payload) < 8:
        raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "bad GOAWAY")
      last, code = fr.U32.unpack_from(payload), fr.U32.unpack_from(payload, 4)
      events.append(
          ev.ConnectionTerminated(code[0], last[0] & fr.MAX_STREAM_ID)
      )
    elif frame_type == fr.PUSH_PROMISE:
      raise _ConnectionFailedError(
          fr.PROTOCOL_ERROR, "PUSH_PROMISE from a client"
      )
    elif frame_type == fr.PRIORITY:
      if len(payload) != 5:
        raise _ConnectionFailedError(fr.FRAME_SIZE_ERROR, "bad PRIORITY")
    # Unknown frame types are ignored, as RFC 9113 asks.

  # Flow control for what we receive.

  def acknowledge_received_data(self, size: int, stream_id: int) -> None:
    """Returns `size` received bytes to the peer's windows (h2's name).

    The application calls this once it no longer holds the bytes (or once
    its budget allows), so the windows bound what it holds.
    """
    unacked = self._unacked + size  # _ack_connection, inlined
    if unacked >= self._connection_window >> 1:
      self._out.append(fr.window_update(0, unacked))
      self.recv_window += unacked
      unacked = 0
    self._unacked = unacked
    stream = self._streams.get(stream_id)
    if stream is not None and not stream.ended:
      stream.unacked += size
      if stream.unacked >= self._stream_window >> 1:
        self._out.append(fr.window_update(stream_id, stream.unacked))
        stream.unacked = 0

  def _ack_connection(self, size: int) -> None:
    self._unacked += size
    if self._unacked >= self._connection_window >> 1:
      self._out.append(fr.window_update(0, self._unacked))
      self.recv_window += self._unacked
      self._unacked = 0

  # What the application sends.

  def _block(self, headers: Headers) -> bytes:
    if type(headers) is tuple:  # constant blocks: encoded once
      block = self._encoded.get(headers)
      if block is None:
        block = encode_headers(headers)
        if len(self._encoded) < 64:
          self._encoded[headers] = block
      return block
    return encode_headers(headers)

  def send_headers(
      self, stream_id: int, headers: Headers, end_stream: bool = False
  ) -> None:
    stream = self._streams.get(stream_id)
    if stream is None:
      return
    block = self._block(headers)
    if stream.pending is not None:
      stream.trailers = block  # after the DATA still waiting for window
      return
    self._out.append(
        fr.header_frames(stream_id, block, end_stream, self._peer_max_frame)
    )
    self._sent_since_ping = True
    if end_stream:
      self._end_stream(stream_id, stream)

  def send_data(
      self, stream_id: int, data: bytes, end_stream: bool = False
  ) -> None:
    stream = self._streams.get(stream_id)
    if stream is None:
      return
    if stream.pending is not None:
      stream.pending = memoryview(bytes(stream.pending) + data)
    else:
      stream.pending = memoryview(data)
      self._blocked[stream_id] = stream
    self.pending_bytes += len(data)
    if end_stream:
      stream.trailers = b""
    self._pump()

  def send_response(
      self, stream_id: int, headers: Headers, data: bytes, trailers: Headers
  ) -> None:
    """Headers, one DATA and trailers: one write when the windows allow."""
    stream = self._streams.get(stream_id)
    if stream is None:
      return
    size = len(data)
    max_frame = self._peer_max_frame
    encoded = self._encoded
    block = encoded.get(headers) if type(headers) is tuple else None
    out = fr.header_frames(
        stream_id, block or self._block(headers), False, max_frame
    )
    self._sent_since_ping = True
    if (
        size <= max_frame
        and size <= self._send_window
        and size <= stream.send_window
    ):
      self._send_window -= size
      block = encoded.get(trailers) if type(trailers) is tuple else None
      self._out.append(
          out
          + fr.frame(fr.DATA, 0, stream_id, data)
          + fr.header_frames(
              stream_id, block or self._block(trailers), True, max_frame
          )
      )
      del self._streams[stream_id]  # _end_stream, inlined
      if not stream.ended:
        self._out.append(fr.rst_stream(stream_id, fr.NO_ERROR))
      return
    self._out.append(out)
    stream.pending = memoryview(data)
    stream.trailers = self._block(trailers)
    self.pending_bytes += size
    self._blocked[stream_id] = stream
    self._pump()

  def reset_stream(self, stream_id: int, error_code: int) -> None:
    stream = self._streams.pop(stream_id, None)
    if stream is not None:
      self._unblock(stream_id, stream)
      self._out.append(fr.rst_stream(stream_id, error_code))

  def _unblock(self, stream_id: int, stream: _Stream) -> None:
    if stream.pending is not None:
      self.pending_bytes -= len(stream.pending)
      stream.pending = None
      self._blocked.pop(stream_id, None)

  def _end_stream(self, stream_id: int, stream: _Stream) -> None:
    del self._streams[stream_id]
    if not stream.ended:
      # Answered before the request ended: the client may stop sending.
      self._out.append(fr.rst_stream(stream_id, fr.NO_ERROR))

  def _pump(self) -> None:
    """Sends DATA that waited for flow-control window."""
    for stream_id, stream in list(self._blocked.items()):
      pending = stream.pending
      while pending and self._send_window > 0 and stream.send_window > 0:
        size = min(
            len(pending),
            self._send_window,
            stream.send_window,
            self._peer_max_frame,
        )
        self._out.append(fr.frame(fr.DATA, 0, stream_id, bytes(pending[:size])))
        pending = pending[size:]
        self._send_window -= size
        stream.send_window -= size
        self.pending_bytes -= size
        self._sent_since_ping = True
      if pending:
        stream.pending = pending
        if self._send_window <= 0:
          break
        continue
      stream.pending = None
      del self._blocked[stream_id]
      if stream.trailers is not None:
        if stream.trailers:
          self._out.append(
              fr.header_frames(
                  stream_id, stream.trailers, True, self._peer_max_frame
              )
          )
        else:
          self._out.append(fr.frame(fr.DATA, fr.FLAG_END_STREAM, stream_id))
        self._end_stream(stream_id, stream)

  # The connection.

  def ping(self, data: bytes) -> None:
    self._out.append(fr.frame(fr.PING, 0, 0, data))

  def close_connection(
      self, error_code: int = fr.NO_ERROR, additional_data: bytes = b""
  ) -> None:
    """GOAWAY with the last stream seen; the glue closes once it is sent."""
    self._out.append(
        fr.goaway(self._last_stream, error_code, additional_data[:256])
    )
    self.going_away = True
    if error_code != fr.NO_ERROR:
      self.closed = True
