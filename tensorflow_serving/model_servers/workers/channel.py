"""Messages between the supervisor and its workers over one UNIX socket each.

A message is a small JSON header (what, which call) and an opaque payload
(serialized protos the supervisor never parses):

    u32 header length | u32 payload length | header JSON | payload

Both ends are this project's own processes, but a length is still bounded so
that a torn stream cannot make either side allocate without limit. The
supervisor reads on asyncio (`read`); a worker on a plain thread
(`read_blocking`), so that answering never needs its event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import json
import socket
import struct
from typing import Any

_PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 1 << 20
# A ModelServerConfig or GetModelStatusResponse; far below this in practice.
MAX_PAYLOAD_BYTES = 256 << 20

Header = dict[str, Any]


class ChannelError(Exception):
  """The peer sent something that is not a message."""


def encode(header: Header, payload: bytes = b"") -> bytes:
  data = json.dumps(header, separators=(",", ":")).encode()
  return _PREFIX.pack(len(data), len(payload)) + data + payload


def _lengths(prefix: bytes) -> tuple[int, int]:
  header_len, payload_len = _PREFIX.unpack(prefix)
  if header_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
    raise ChannelError(
        f"message too large: header {header_len}, payload {payload_len}"
    )
  return header_len, payload_len


def _header(data: bytes) -> Header:
  try:
    header = json.loads(data)
  except ValueError as exc:
    raise ChannelError(f"header is not JSON: {exc}") from exc
  if not isinstance(header, dict) or not isinstance(header.get("type"), str):
    raise ChannelError(f"header has no type: {header!r}")
  return header


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
  chunks = []
  while size:
    chunk = sock.recv(min(size, 1 << 20))
    if not chunk:
      return None
    chunks.append(chunk)
    size -= len(chunk)
  return b"".join(chunks)


def read_blocking(sock: socket.socket) -> tuple[Header, bytes] | None:
  """The next message, or None once the peer has closed the socket."""
  prefix = _recv_exactly(sock, _PREFIX.size)
  if prefix is None:
    return None
  header_len, payload_len = _lengths(prefix)
  body = _recv_exactly(sock, header_len + payload_len)
  if body is None:
    return None
  return _header(body[:header_len]), body[header_len:]


async def read(reader: asyncio.StreamReader) -> tuple[Header, bytes] | None:
  """The next message, or None once the peer has closed the socket."""
  try:
    prefix = await reader.readexactly(_PREFIX.size)
    header_len, payload_len = _lengths(prefix)
    body = await reader.readexactly(header_len + payload_len)
  except (asyncio.IncompleteReadError, ConnectionError):
    return None
  return _header(body[:header_len]), body[header_len:]


def join(parts: Sequence[bytes]) -> tuple[list[int], bytes]:
  """Several payloads as one: their sizes (for the header) and the bytes."""
  return [len(p) for p in parts], b"".join(parts)


def split(sizes: Sequence[int], payload: bytes) -> list[bytes]:
  """Undoes `join`."""
  if sum(sizes) != len(payload) or any(s < 0 for s in sizes):
    raise ChannelError(f"sizes {list(sizes)} do not add up to {len(payload)}")
  parts, offset = [], 0
  for size in sizes:
    parts.append(payload[offset : offset + size])
    offset += size
  return parts
