"""Decompression with a cap on the inflated size, for gRPC and REST bodies.

`zlib.decompress` inflates a 1 MB gzip bomb to 1 GB before anyone can look
at its size; these stop one byte past the cap, and the async form yields to
the event loop every `step` bytes of output so a large body never holds it.
"""

from __future__ import annotations

import asyncio
import zlib


class TooLarge(Exception):  # noqa: N818 (a refusal, reported to the client)
  """The inflated data would exceed `limit` bytes."""

  def __init__(self, limit: int):
    super().__init__(f"inflated size exceeds {limit} bytes")
    self.limit = limit


def _check_end(inflater) -> None:
  if not inflater.eof:
    raise zlib.error("incomplete or truncated stream")


def inflate(data: bytes, wbits: int, limit: int) -> bytes:
  """`data` inflated (zlib `wbits` format), or TooLarge past `limit` bytes."""
  inflater = zlib.decompressobj(wbits)
  out = inflater.decompress(data, limit + 1)
  if len(out) > limit:
    raise TooLarge(limit)
  _check_end(inflater)
  return out


async def inflate_async(
    data: bytes | bytearray, wbits: int, limit: int, step: int = 1 << 20
) -> bytes | bytearray:
  """As `inflate`, yielding to the loop after each `step` bytes of output.

  Output of more than one step grows one bytearray in place: a list of
  steps joined at the end would hold the inflated body twice.
  """
  inflater = zlib.decompressobj(wbits)
  out: bytes | bytearray = b""
  pending = data
  while True:
    chunk = inflater.decompress(pending, step)
    out = _grown(out, chunk, limit)
    pending = inflater.unconsumed_tail
    if inflater.eof or not (pending or len(chunk) == step):
      break
    await asyncio.sleep(0)
  if not inflater.eof:
    out = _grown(out, inflater.flush(), limit)
  _check_end(inflater)
  return out


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
