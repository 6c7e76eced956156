"""Decompression with a cap on the inflated size, for gRPC and REST bodies.

`zlib.decompress` inflates a 1 MB gzip bomb to 1 GB before anyone can look
at its size; these stop one byte past the cap. Both forms inflate in steps
of `step` output bytes into one buffer that grows in place: zlib's own
output buffer is a list of blocks joined at the end, which held a large
message twice (4 GB for a body capped at 2 GB) and copied it with the GIL
held. The compressed input is fed in slices, so a step never copies more
than a slice of it (zlib's `unconsumed_tail` is a copy of all that is left).
The async form yields to the event loop after each step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import zlib

# Compressed bytes handed to zlib at a time.
_INPUT_SLICE = 64 << 10


class TooLarge(Exception):  # noqa: N818 (a refusal, reported to the client)
  """The inflated data would exceed `limit` bytes."""

  def __init__(self, limit: int):
    super().__init__(f"inflated size exceeds {limit} bytes")
    self.limit = limit


def inflate(
    data: bytes | bytearray, wbits: int, limit: int, step: int = 1 << 20
) -> bytes | bytearray:
  """`data` inflated (zlib `wbits` format), or TooLarge past `limit` bytes.

  Output of more than one step is a bytearray.
  """
  out: bytes | bytearray = b""
  for chunk in _steps(data, wbits, step):
    out = _grown(out, chunk, limit)
  return out


async def inflate_async(
    data: bytes | bytearray, wbits: int, limit: int, step: int = 1 << 20
) -> bytes | bytearray:
  """As `inflate`, yielding to the loop after each `step` bytes of output."""
  out: bytes | bytearray = b""
  for chunk in _steps(data, wbits, step):
    out = _grown(out, chunk, limit)
    if len(chunk) == step:
      await asyncio.sleep(0)
  return out


def _steps(data: bytes | bytearray, wbits: int, step: int) -> Iterator[bytes]:
  """The inflated data, at most `step` bytes at a time."""
  inflater = zlib.decompressobj(wbits)
  view = memoryview(data)
  for start in range(0, len(view), _INPUT_SLICE):
    pending: bytes | memoryview = view[start : start + _INPUT_SLICE]
    while True:
      chunk = inflater.decompress(pending, step)
      if chunk:
        yield chunk
      pending = inflater.unconsumed_tail
      # A full step may leave output inside zlib with no input left.
      if inflater.eof or not (pending or len(chunk) == step):
        break
    if inflater.eof:
      break
  if not inflater.eof:
    rest = inflater.flush()
    if rest:
      yield rest
  if not inflater.eof:
    raise zlib.error("incomplete or truncated stream")


def _grown(
    out: bytes | bytearray, chunk: bytes, limit: int
) -> bytes | bytearray:
  if len(out) + len(chunk) > limit:
    raise TooLarge(limit)
  if not out:
    return chunk
  if not isinstance(out, bytearray):
    out = bytearray(out)
  out += chunk
  return out
