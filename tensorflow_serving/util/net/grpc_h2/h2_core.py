"""connection.py's interface over python-hyper h2's H2Connection.

The same gRPC call layer runs on either core (`--grpc_http2_engine`), so the
cost of the kept library can be measured against ours in one A/B run (see
tools/benchmark/engine_ab.py). h2 does its own framing, HPACK, stream states, flow
control and header validation; this adapts its events to events.py, keeps
answers that wait for window (h2 leaves that to the caller), and adds the
abuse budgets h2 does not have (resets, pings, settings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tensorflow_serving.util.net import rate
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

Headers = Sequence[tuple[bytes, bytes]]


class H2Core:
  """H2Connection behind connection.H2Connection's methods."""

  def __init__(
      self,
      limits: limits_lib.GrpcLimits = limits_lib.DEFAULT,
      clock: Callable[[], float] = time.monotonic,
      stream_window: int = 4 << 20,
  ):
    self._limits = limits
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=True,
    )
    self._conn = h2.connection.H2Connection(config=config)
    self._conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: min(
                limits.max_concurrent_streams, limits_lib.INT_MAX
            ),
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: (
                limits.max_decoded_header_bytes
            ),
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        },
    )
    self._pending: dict[int, list] = {}  # stream -> [memoryview, trailers]
    self.pending_bytes = 0
    self._received = 0
    self._graceful = b""
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
    self._conn.initiate_connection()
    self.grow_connection_window(connection_window - fr.DEFAULT_WINDOW)

  def grow_connection_window(self, increment: int) -> None:
    if increment > 0:
      self._conn.increment_flow_control_window(increment)

  @property
  def recv_window(self) -> int:
    return self._conn.inbound_flow_control_window

  @property
  def preface_received(self) -> bool:
    return self._received >= len(fr.PREFACE)

  @property
  def open_streams(self) -> int:
    return self._conn.open_inbound_streams

  def data_to_send(self) -> bytes:
    out = self._conn.data_to_send()
    if self._graceful:
      out, self._graceful = out + self._graceful, b""
    return out

  # Bytes in.

  def receive_data(self, data: bytes) -> list[ev.Event]:
    if self.closed:
      return []
    self._received += len(data)
    try:
      return self._translate(self._conn.receive_data(data))
    except h2.exceptions.ProtocolError as exc:
      code = int(getattr(exc, "error_code", fr.PROTOCOL_ERROR))
      return [self._failed(code, str(exc) or type(exc).__name__)]
    except _Calm as exc:
      self._conn.close_connection(fr.ENHANCE_YOUR_CALM, str(exc).encode())
      return [self._failed(fr.ENHANCE_YOUR_CALM, str(exc))]

  def _failed(self, code: int, message: str) -> ev.ProtocolFailure:
    self.closed = self.going_away = True
    return ev.ProtocolFailure(code, message)

  def _translate(self, events: list) -> list[ev.Event]:
    out: list[ev.Event] = []
    reported = set()
    for event in events:
      kind = type(event)
      if kind is h2.events.DataReceived:
        ended = event.stream_ended is not None
        if ended:
          reported.add(id(event.stream_ended))
        elif not event.data and not self._control.take():
          raise _Calm("too many empty frames")
        out.append(
            ev.DataReceived(
                event.stream_id,
                event.data,
                event.flow_controlled_length,
                ended,
            )
        )
      elif kind is h2.events.RequestReceived:
        ended = event.stream_ended is not None
        if ended:
          reported.add(id(event.stream_ended))
        if self.going_away:
          self._conn.reset_stream(event.stream_id, fr.REFUSED_STREAM)
          continue
        # h2 applies its advertised limit only once the client acknowledged
        # it (and then as a connection error); before that, refuse here.
        if (
            self._conn.open_inbound_streams
            > self._limits.max_concurrent_streams
        ):
          self._conn.reset_stream(event.stream_id, fr.REFUSED_STREAM)
          if not self._resets.take():
            raise _Calm("too many refused streams")
          continue
        headers = event.headers
        size = sum(len(name) + len(value) + 32 for name, value in headers)
        out.append(ev.RequestReceived(event.stream_id, headers, size, ended))
      elif kind is h2.events.TrailersReceived:
        if event.stream_ended is not None:
          reported.add(id(event.stream_ended))
        out.append(ev.StreamEnded(event.stream_id))
      elif kind is h2.events.StreamEnded:
        if id(event) not in reported:
          out.append(ev.StreamEnded(event.stream_id))
      elif kind is h2.events.StreamReset:
        self._drop(event.stream_id)
        if event.remote_reset:
          if not self._resets.take():
            raise _Calm("too many stream resets")
          out.append(ev.StreamReset(event.stream_id, int(event.error_code)))
      elif kind in (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged):
        if kind is h2.events.RemoteSettingsChanged and not self._control.take():
          raise _Calm("too many SETTINGS")
        self._pump()
      elif kind is h2.events.PingReceived:
        if not self._control.take():
          raise _Calm("too_many_pings")
      elif kind is h2.events.PingAckReceived:
        out.append(ev.PingAckReceived(event.ping_data))
      elif kind is h2.events.ConnectionTerminated:
        out.append(
            ev.ConnectionTerminated(
                int(event.error_code or 0), event.last_stream_id or 0
            )
        )
    return out

  # Flow control for what we receive.

  def acknowledge_received_data(self, size: int, stream_id: int) -> None:
    if size:
      self._conn.acknowledge_received_data(size, stream_id)

  # What the application sends.

  def send_headers(
      self, stream_id: int, headers: Headers, end_stream: bool = False
  ) -> None:
    pending = self._pending.get(stream_id)
    if pending is not None:  # trailers, after the DATA still queued
      pending[1] = headers
      self._pump()
      return
    try:
      self._conn.send_headers(stream_id, headers, end_stream=end_stream)
      if end_stream:
        self._end_early(stream_id)
    except h2.exceptions.ProtocolError:  # the stream is gone
      pass

  def send_data(
      self, stream_id: int, data: bytes, end_stream: bool = False
  ) -> None:
    pending = self._pending.get(stream_id)
    if pending is None:
      pending = self._pending[stream_id] = [memoryview(b""), None]
    pending[0] = memoryview(bytes(pending[0]) + data)
    if end_stream:
      pending[1] = ()
    self.pending_bytes += len(data)
    self._pump()

  def send_response(
      self, stream_id: int, headers: Headers, data: bytes, trailers: Headers
  ) -> None:
    try:
      self._conn.send_headers(stream_id, headers)
    except h2.exceptions.ProtocolError:  # the stream is gone
      return
    self._pending[stream_id] = [memoryview(data), trailers]
    self.pending_bytes += len(data)
    self._pump()

  def reset_stream(self, stream_id: int, error_code: int) -> None:
    self._drop(stream_id)
    try:
      self._conn.reset_stream(stream_id, error_code)
    except h2.exceptions.ProtocolError:  # the stream is gone
      pass

  def _drop(self, stream_id: int) -> None:
    pending = self._pending.pop(stream_id, None)
    if pending is not None:
      self.pending_bytes -= len(pending[0])

  def _end_early(self, stream_id: int) -> None:
    """Answered before the request ended: the client may stop sending."""
    stream = self._conn.streams.get(stream_id)
    if stream is not None and not stream.closed:
      try:
        self._conn.reset_stream(stream_id, fr.NO_ERROR)
      except h2.exceptions.ProtocolError:  # the stream is gone
        pass

  def _pump(self) -> None:
    conn = self._conn
    for stream_id, pending in list(self._pending.items()):
      data, trailers = pending
      try:
        while data:
          window = conn.local_flow_control_window(stream_id)
          size = min(len(data), window, conn.max_outbound_frame_size)
          if size <= 0:
            break
          conn.send_data(stream_id, data[:size].tobytes())
          data = data[size:]
          self.pending_bytes -= size
        pending[0] = data
        if data or trailers is None:
          continue
        del self._pending[stream_id]
        if trailers:
          conn.send_headers(stream_id, trailers, end_stream=True)
        else:
          conn.end_stream(stream_id)
        self._end_early(stream_id)
      except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
        self._drop(stream_id)

  # The connection.

  def ping(self, data: bytes) -> None:
    self._conn.ping(data)

  def close_connection(
      self, error_code: int = fr.NO_ERROR, additional_data: bytes = b""
  ) -> None:
    self.going_away = True
    if error_code != fr.NO_ERROR:
      self.closed = True
      self._conn.close_connection(
          error_code,
          additional_data[:256] or None,
          last_stream_id=self._conn.highest_inbound_stream_id,
      )
      return
    # h2 sends nothing after its own GOAWAY, but a graceful one must let the
    # calls in flight finish: the frame goes out behind h2's back, and new
    # streams are refused here.
    self._graceful = fr.goaway(
        self._conn.highest_inbound_stream_id or 0, fr.NO_ERROR
    )


class _Calm(Exception):  # noqa: N818 (an abuse budget ran out)
  pass
