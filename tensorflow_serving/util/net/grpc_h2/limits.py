"""Every limit and timeout of the gRPC transport, with its channel argument.

Defaults follow upstream TF Serving's server (max receive 2^31-1 bytes) and
grpc C-core's (metadata 16 KiB hard limit, keepalive every 2 h with a 20 s
timeout, 120 s handshake timeout). Where grpc has no bound, this server
still has one: a buffer budget, by default just large enough that every
message upstream's server takes still fits (so no request upstream answers
is refused), which bounds the memory clients can make it hold; lower it for
small hosts. Refusals carry the status grpc uses for the same thing.
"""

from __future__ import annotations

import dataclasses

INT_MAX = (1 << 31) - 1


@dataclasses.dataclass(frozen=True)
class GrpcLimits:
  """What one gRPC server allows; `None` means no limit where it is allowed."""

  # Largest request message, after decompression (RESOURCE_EXHAUSTED past it,
  # as soon as the length prefix says so). Upstream's server: INT_MAX.
  max_receive_message_length: int = INT_MAX
  # Decoded header-list size past which a call fails with RESOURCE_EXHAUSTED
  # (grpc's absolute_max_metadata_size; the connection goes on).
  max_metadata_size: int = 16 << 10
  # Concurrent calls per connection: advertised in SETTINGS, and streams past
  # it are refused (REFUSED_STREAM), as grpc C-core does when it is set.
  max_concurrent_streams: int = 256
  # Request bytes a connection may have buffered (bodies of calls not yet
  # finished, plus responses a slow reader has not taken). Past it the
  # server stops granting flow-control window; a single message that could
  # never fit is refused with RESOURCE_EXHAUSTED. The default holds one
  # message of max_receive_message_length even compressed (the compressed
  # message and what it inflates to), as upstream's server accepts it.
  max_connection_buffer_bytes: int = 4 << 30
  # The same, summed over every connection of the server.
  max_server_buffer_bytes: int = 4 << 30
  # A connection that has not sent the HTTP/2 preface by then is closed
  # (grpc.server_handshake_timeout_ms).
  handshake_timeout_ms: int | None = 120_000
  # Server keepalive pings (grpc.keepalive_time_ms / keepalive_timeout_ms):
  # a peer that does not answer one within the timeout is closed.
  keepalive_time_ms: int | None = 7_200_000
  keepalive_timeout_ms: int = 20_000
  # GOAWAY a connection with no call for this long (grpc's
  # max_connection_idle_ms; grpc's default is none, this server's 5 min:
  # clients reconnect transparently on their next call).
  max_connection_idle_ms: int | None = 300_000
  # GOAWAY every connection after this long, then give its calls
  # max_connection_age_grace_ms (grpc: none and none).
  max_connection_age_ms: int | None = None
  max_connection_age_grace_ms: int | None = None
  # Abuse budgets per connection: a token bucket each (burst, refill per
  # second); an empty bucket sends GOAWAY ENHANCE_YOUR_CALM and closes.
  # Resets: streams the client cancels before their answer, and streams
  # refused for concurrency (CVE-2023-44487, "rapid reset").
  reset_burst: int = 1000
  resets_per_s: float = 200.0
  # PINGs that arrive with no DATA or HEADERS sent in between (grpc C-core
  # counts "ping strikes" the same way), SETTINGS frames, and frames that
  # carry nothing (empty DATA without END_STREAM, empty CONTINUATION).
  control_burst: int = 200
  control_frames_per_s: float = 20.0
  # Streaming methods (server reflection): the largest message a streaming
  # call may send (grpc's default receive limit; streaming methods here are
  # small control calls, never inference), and how long such a call may go
  # without sending one before it ends with UNAVAILABLE, so an open stream
  # cannot hold a stream slot forever.
  max_stream_message_bytes: int = 4 << 20
  max_stream_idle_ms: int | None = 300_000

  @property
  def max_header_block_bytes(self) -> int:
    """Encoded HEADERS + CONTINUATION bytes one block may take, pre-HPACK.

    Past it (or past twice the metadata limit once decoded) the connection
    gets GOAWAY ENHANCE_YOUR_CALM: the decoder's state cannot be kept
    without decoding, and decoding is what the limit protects.
    """
    return max(2 * self.max_metadata_size, 16 << 10)

  @property
  def max_decoded_header_bytes(self) -> int:
    return max(2 * self.max_metadata_size, 16 << 10)

  @property
  def max_message_bytes(self) -> int:
    """The largest message this server can take: it must fit the budget."""
    return min(
        self.max_receive_message_length,
        self.max_connection_buffer_bytes,
        self.max_server_buffer_bytes,
    )

  @property
  def max_inflated_bytes(self) -> int:
    """The largest a compressed message may inflate to.

    Half the budget: inflation holds its output once (inflate.py), so the
    inflated message, the compressed one and its parse fit the budget.
    """
    return min(
        self.max_receive_message_length,
        self.max_connection_buffer_bytes // 2,
        self.max_server_buffer_bytes // 2,
    )


DEFAULT = GrpcLimits()

# --grpc_channel_arguments keys that set a GrpcLimits field. gRPC reads a
# negative size as "unlimited"; for the budgets that means the largest.
CHANNEL_ARGUMENTS = {
    "grpc.max_receive_message_length": "max_receive_message_length",
    "grpc.max_concurrent_streams": "max_concurrent_streams",
    "grpc.max_metadata_size": "max_metadata_size",
    "grpc.absolute_max_metadata_size": "max_metadata_size",
    "grpc.server_handshake_timeout_ms": "handshake_timeout_ms",
    "grpc.keepalive_time_ms": "keepalive_time_ms",
    "grpc.keepalive_timeout_ms": "keepalive_timeout_ms",
    "grpc.max_connection_idle_ms": "max_connection_idle_ms",
    "grpc.max_connection_age_ms": "max_connection_age_ms",
    "grpc.max_connection_age_grace_ms": "max_connection_age_grace_ms",
    # Beyond grpc: this server's budgets and abuse limits.
    "grpc.tf_serving.max_connection_buffer_bytes": (
        "max_connection_buffer_bytes"
    ),
    "grpc.tf_serving.max_server_buffer_bytes": "max_server_buffer_bytes",
    "grpc.tf_serving.reset_burst": "reset_burst",
    "grpc.tf_serving.resets_per_s": "resets_per_s",
    "grpc.tf_serving.control_burst": "control_burst",
    "grpc.tf_serving.control_frames_per_s": "control_frames_per_s",
    "grpc.tf_serving.max_stream_message_bytes": "max_stream_message_bytes",
    "grpc.tf_serving.max_stream_idle_ms": "max_stream_idle_ms",
}
_UNLIMITED = {
    "max_receive_message_length": INT_MAX,
    "max_metadata_size": INT_MAX,
    "max_concurrent_streams": INT_MAX,
    "max_connection_buffer_bytes": 1 << 62,
    "max_server_buffer_bytes": 1 << 62,
    "max_connection_idle_ms": None,
    "handshake_timeout_ms": None,
    "keepalive_time_ms": None,
    "max_connection_age_ms": None,
    "max_connection_age_grace_ms": None,
    "max_stream_message_bytes": INT_MAX,
    "max_stream_idle_ms": None,
}


def from_channel_arguments(
    arguments: dict[str, int], base: GrpcLimits = DEFAULT
) -> GrpcLimits:
  """`base` with the fields named by CHANNEL_ARGUMENTS keys replaced."""
  changes = {}
  for key, value in arguments.items():
    field = CHANNEL_ARGUMENTS[key]
    if field == "keepalive_timeout_ms" and value <= 0:
      continue  # no timeout is no keepalive check: keep the default
    # Negative sizes are grpc's "unlimited"; so is 0 for streams and times.
    zero_is_none = field == "max_concurrent_streams" or field.endswith("_ms")
    if value < 0 or (value == 0 and zero_is_none):
      changes[field] = _UNLIMITED.get(field, value)
    else:
      changes[field] = value
  return dataclasses.replace(base, **changes)
