"""What an HTTP/2 connection core reports after `receive_data`.

Named as python-hyper h2's events are, so the gRPC call layer runs on either
core (connection.py, or h2_core.py over h2). Fewer of them: a DATA frame
that ends its stream is one event, and frames the core answers itself
(SETTINGS, PING, WINDOW_UPDATE) produce none.
"""

from __future__ import annotations

from collections.abc import Sequence

Headers = Sequence[tuple[bytes, bytes]]


class Event:
  __slots__ = ()

  def __repr__(self) -> str:
    fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
    return f"{type(self).__name__}({fields})"


class RequestReceived(Event):
  """A new stream's header block. `headers_size` is RFC 9113's list size."""

  __slots__ = ("stream_id", "headers", "headers_size", "end_stream")

  def __init__(
      self, stream_id: int, headers: Headers, headers_size: int, end_stream
  ):
    self.stream_id = stream_id
    self.headers = headers
    self.headers_size = headers_size
    self.end_stream = end_stream


class DataReceived(Event):
  """DATA for a stream; `flow_controlled_length` counts padding too."""

  __slots__ = ("stream_id", "data", "flow_controlled_length", "end_stream")

  def __init__(
      self,
      stream_id: int,
      data: bytes,
      flow_controlled_length: int,
      end_stream: bool,
  ):
    self.stream_id = stream_id
    self.data = data
    self.flow_controlled_length = flow_controlled_length
    self.end_stream = end_stream


class StreamEnded(Event):
  """The client ended its side without DATA (trailers, or END_STREAM alone)."""

  __slots__ = ("stream_id",)

  def __init__(self, stream_id: int):
    self.stream_id = stream_id


class StreamReset(Event):
  """The client reset a stream the core still had open."""

  __slots__ = ("stream_id", "error_code")

  def __init__(self, stream_id: int, error_code: int):
    self.stream_id = stream_id
    self.error_code = error_code


class PingAckReceived(Event):
  """The answer to a PING we sent (keepalive)."""

  __slots__ = ("data",)

  def __init__(self, data: bytes):
    self.data = data


class ConnectionTerminated(Event):
  """The client sent GOAWAY: no new streams will come."""

  __slots__ = ("error_code", "last_stream_id")

  def __init__(self, error_code: int, last_stream_id: int):
    self.error_code = error_code
    self.last_stream_id = last_stream_id


class ProtocolFailure(Event):
  """The core closed the connection for the client's fault; GOAWAY queued.

  Nothing follows it: the glue writes what is pending and closes.
  """

  __slots__ = ("error_code", "message")

  def __init__(self, error_code: int, message: str):
    self.error_code = error_code
    self.message = message
