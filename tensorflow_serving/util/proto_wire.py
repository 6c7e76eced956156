"""Protocol buffer wire format, written by hand for hot, fixed-shape messages.

Building a message object field by field and serializing it costs tens of
microseconds in Python; for records the server writes for every request
(trace spans, request logs) whose shape is fixed, concatenating the fields'
bytes costs a few. This module holds only the encoding rules of the public
wire format (varints, tags, length-delimited and fixed-width fields); each
caller writes its own messages and tests them against the protobuf
library's own serialization (parsed back and compared).

Every helper writes its field, zero or empty too: leaving out proto3's
defaults (and keeping a oneof member's zero) is the caller's choice.
"""

from __future__ import annotations

import struct

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5

_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
# One-byte varints, looked up instead of computed (most tags and lengths).
_SMALL = [bytes((i,)) for i in range(0x80)]


def varint(value: int) -> bytes:
  """An unsigned varint; negative int64 values as their two's complement."""
  if value < 0:
    value += 1 << 64
  if value < 0x80:
    return _SMALL[value]
  if value < 0x4000:
    return bytes(((value & 0x7F) | 0x80, value >> 7))
  if value < 0x200000:
    return bytes(
        ((value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14)
    )
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
  key = (field_number << 3) | wire_type
  return _SMALL[key] if key < 0x80 else varint(key)


def length_delimited(field_number: int, data: bytes) -> bytes:
  """A bytes, string or embedded message field (its data already encoded)."""
  return tag(field_number, LEN) + varint(len(data)) + data


def string(field_number: int, value: str) -> bytes:
  return length_delimited(field_number, value.encode())


def uint(field_number: int, value: int) -> bytes:
  """A varint scalar field (int32/int64/uint64/enum/bool)."""
  return tag(field_number, VARINT) + varint(value)


def fixed64(field_number: int, value: int) -> bytes:
  return tag(field_number, FIXED64) + _FIXED64.pack(value)


def fixed32(field_number: int, value: int) -> bytes:
  return tag(field_number, FIXED32) + _FIXED32.pack(value)


def double(field_number: int, value: float) -> bytes:
  return tag(field_number, FIXED64) + _DOUBLE.pack(value)
