"""A gRPC message's frame, its compression, and the call's timeout header.

Pure functions over bytes; their failures are the statuses grpcio gives
(servicer_context.Abort).
"""

from __future__ import annotations

import zlib

import grpc

from tensorflow_serving.util.net import inflate
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import servicer_context

_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
RESPONSE_HEADERS = (
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
)
OK_TRAILERS = ((b"grpc-status", b"0"),)


def parse_timeout(value: bytes) -> float | None:
  """grpc-timeout's value in seconds; None when malformed (no deadline)."""
  try:
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]
  except (ValueError, KeyError, IndexError):
    return None


def unframe(body: bytes) -> tuple[bool, bytes]:
  """A unary request's one message: (compressed flag, its bytes)."""
  if len(body) < 5:
    raise servicer_context.Abort(
        grpc.StatusCode.INTERNAL,
        "Expected one request message, received none",
    )
  length = fr.U32.unpack_from(body, 1)[0]
  if length != len(body) - 5:
    raise servicer_context.Abort(
        grpc.StatusCode.INTERNAL,
        "Expected one request message, received a malformed one",
    )
  return bool(body[0]), body[5:]


def inflate_message(encoding: bytes, message: bytes, limit: int) -> bytes:
  """Inflates with a cap on the result (limits.max_inflated_bytes)."""
  if encoding == b"gzip":
    wbits = 31
  elif encoding == b"deflate":
    wbits = zlib.MAX_WBITS
  else:
    raise servicer_context.Abort(
        grpc.StatusCode.UNIMPLEMENTED,
        "Compression algorithm "
        f"'{encoding.decode('latin-1')}' is not supported",
    )
  try:
    return inflate.inflate(message, wbits, limit)
  except inflate.TooLarge as exc:
    raise servicer_context.Abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Received message larger than max (more than "
        f"{exc.limit} bytes once decompressed vs. {limit})",
    ) from exc
  except zlib.error as exc:
    raise servicer_context.Abort(
        grpc.StatusCode.INTERNAL, f"Failed to decompress the request: {exc}"
    ) from exc
