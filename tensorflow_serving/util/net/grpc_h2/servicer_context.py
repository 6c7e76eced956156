"""What a gRPC handler sees of its call: grpc.ServicerContext's subset.

The call layer (calls.py) makes one per call; `abort` ends the call with a
status by raising Abort, which the call layer turns into trailers.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any, Protocol

import grpc

Metadata = Sequence[tuple[str, str | bytes]]

# Not sent to the application as invocation metadata (grpcio does the same).
_RESERVED_HEADERS = frozenset(
    (
        b"content-type",
        b"te",
        b"grpc-timeout",
        b"grpc-encoding",
        b"grpc-accept-encoding",
    )
)


class CallLayer(Protocol):
  """What a context reads of its connection's call layer (calls.GrpcCalls)."""

  peer: str
  loop: asyncio.AbstractEventLoop


class Abort(Exception):  # noqa: N818 (control flow, not an error)
  """Raised by ServicerContext.abort to end the call with a status."""

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(details)
    self.code = code
    self.details = details


def encode_metadata(metadata: Metadata) -> list[tuple[bytes, bytes]]:
  out = []
  for key, value in metadata:
    key = key.lower()
    if key.endswith("-bin"):
      if isinstance(value, str):
        value = value.encode()
      value = base64.b64encode(value).rstrip(b"=")
    elif isinstance(value, str):
      value = value.encode()
    out.append((key.encode(), value))
  return out


class ServicerContext:
  """What a handler sees of its call; a subset of grpc.ServicerContext.

  `abort` raises from a plain function; _AsyncServicerContext's is awaited,
  as in grpc.aio.
  """

  def __init__(self, calls: CallLayer, call: Any):
    self._calls = calls
    self._call = call
    self._code: grpc.StatusCode | None = None
    self._details = ""
    self.initial_metadata: Metadata = ()
    self.trailing_metadata: Metadata = ()

  def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
    out = []
    for name, value in self._call.headers:
      if name[:1] == b":" or name in _RESERVED_HEADERS:
        continue
      key = name.decode("latin-1")
      if key.endswith("-bin"):
        out.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
      else:
        out.append((key, value.decode("latin-1")))
    return tuple(out)

  def peer(self) -> str:
    return self._calls.peer

  def time_remaining(self) -> float | None:
    deadline = self._call.deadline
    if deadline is None:
      return None
    return max(0.0, deadline - self._calls.loop.time())

  def is_active(self) -> bool:
    return not self._call.finished

  def cancelled(self) -> bool:
    return self._call.finished and self._call.cancelled

  def set_code(self, code: grpc.StatusCode) -> None:
    self._code = code

  def set_details(self, details: str) -> None:
    self._details = details

  def code(self) -> grpc.StatusCode | None:
    return self._code

  def details(self) -> str:
    return self._details

  def set_trailing_metadata(self, metadata: Metadata) -> None:
    self.trailing_metadata = tuple(metadata)

  def set_compression(self, compression: Any) -> None:
    """Responses are never compressed; accepted for grpcio compatibility."""

  def disable_next_message_compression(self) -> None:
    """Responses are never compressed."""

  def abort(
      self,
      code: grpc.StatusCode,
      details: str = "",
      trailing_metadata: Metadata = (),
  ):
    if trailing_metadata:
      self.trailing_metadata = tuple(trailing_metadata)
    raise Abort(code, details)

  def send_initial_metadata(self, metadata: Metadata) -> None:
    self.initial_metadata = tuple(metadata)


class AsyncServicerContext(ServicerContext):
  """grpc.aio's flavour: abort and send_initial_metadata are coroutines."""

  async def abort(
      self,
      code: grpc.StatusCode,
      details: str = "",
      trailing_metadata: Metadata = (),
  ):
    super().abort(code, details, trailing_metadata)

  async def send_initial_metadata(self, metadata: Metadata) -> None:
    super().send_initial_metadata(metadata)
