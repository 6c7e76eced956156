"""HTTP/2 framing and the HPACK subset gRPC peers here need (RFC 9113, 7541).

Shared by the server transport and the benchmark's client. Header blocks we
send use only literals that never touch the peer's dynamic table, so encoding
needs no per-connection state; decoding goes through the `hpack` library,
which keeps the peer's table.
"""

from __future__ import annotations

import struct

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# SETTINGS parameters.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# Error codes (RST_STREAM, GOAWAY).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
MAX_WINDOW = (1 << 31) - 1
MAX_STREAM_ID = (1 << 31) - 1
HEADER = struct.Struct(">BHBBI")  # 24-bit length as 8 + 16, type, flags, id
SETTING = struct.Struct(">HI")
U32 = struct.Struct(">I")

# grpc-status numbers, in the order grpc.StatusCode names them.
STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


def frame(
    frame_type: int, flags: int, stream_id: int, payload: bytes = b""
) -> bytes:
  size = len(payload)
  return (
      HEADER.pack(size >> 16, size & 0xFFFF, frame_type, flags, stream_id)
      + payload
  )


def settings(pairs: dict[int, int]) -> bytes:
  return frame(
      SETTINGS,
      0,
      0,
      b"".join(SETTING.pack(key, value) for key, value in pairs.items()),
  )


def window_update(stream_id: int, increment: int) -> bytes:
  return frame(WINDOW_UPDATE, 0, stream_id, U32.pack(increment))


def rst_stream(stream_id: int, error_code: int) -> bytes:
  return frame(RST_STREAM, 0, stream_id, U32.pack(error_code))


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
  return frame(
      GOAWAY, 0, 0, U32.pack(last_stream_id) + U32.pack(error_code) + debug
  )


def header_frames(
    stream_id: int, block: bytes, end_stream: bool, max_frame: int
) -> bytes:
  """HEADERS, plus CONTINUATIONs when `block` exceeds the peer's frame size."""
  first_flags = FLAG_END_STREAM if end_stream else 0
  if len(block) <= max_frame:
    return frame(HEADERS, first_flags | FLAG_END_HEADERS, stream_id, block)
  chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
  out = [frame(HEADERS, first_flags, stream_id, chunks[0])]
  for chunk in chunks[1:-1]:
    out.append(frame(CONTINUATION, 0, stream_id, chunk))
  out.append(frame(CONTINUATION, FLAG_END_HEADERS, stream_id, chunks[-1]))
  return b"".join(out)


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
  """An HPACK integer with a `prefix_bits` prefix, OR-ed into `first`."""
  limit = (1 << prefix_bits) - 1
  if value < limit:
    return bytes([first | value])
  out = bytearray([first | limit])
  value -= limit
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def hpack_str(data: bytes | str) -> bytes:
  """A string literal, not Huffman-coded."""
  if isinstance(data, str):
    data = data.encode()
  return hpack_int(len(data), 7) + data


def literal(name: bytes | str, value: bytes | str) -> bytes:
  """A header field literal with a new name, never added to a table."""
  return b"\x00" + hpack_str(name) + hpack_str(value)


def literal_indexed_name(static_index: int, value: bytes | str) -> bytes:
  """A literal whose name is static-table entry `static_index`, unindexed."""
  return hpack_int(static_index, 4) + hpack_str(value)


# Static-table entries used below (RFC 7541 appendix A).
_STATIC_AUTHORITY, _STATIC_PATH, _STATIC_CONTENT_TYPE = 1, 4, 31
STATUS_200 = b"\x88"  # indexed :status 200


def request_header_block(method_path: str, authority: str) -> bytes:
  """A gRPC request's header block: POST, http, path, authority, te."""
  return (
      b"\x83\x86"
      + literal_indexed_name(_STATIC_PATH, method_path)
      + literal_indexed_name(_STATIC_AUTHORITY, authority)
      + literal_indexed_name(_STATIC_CONTENT_TYPE, "application/grpc")
      + literal("te", "trailers")
  )


def response_header_block(extra: bytes = b"") -> bytes:
  """A gRPC response's leading headers: :status 200, content-type."""
  return (
      STATUS_200
      + literal_indexed_name(_STATIC_CONTENT_TYPE, "application/grpc")
      + extra
  )


def grpc_message(payload: bytes) -> bytes:
  """A length-prefixed, uncompressed gRPC message."""
  return b"\x00" + U32.pack(len(payload)) + payload


def percent_encode(text: str) -> bytes:
  """grpc-message encoding: UTF-8, then %XX outside printable ASCII and '%'."""
  data = text.encode("utf-8", "replace")
  if all(0x20 <= b <= 0x7E and b != 0x25 for b in data):
    return data
  return b"".join(
      bytes([b]) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b
      for b in data
  )
