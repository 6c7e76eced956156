"""The request side of a client-streaming call: messages as they arrive.

A streaming handler (grpc.aio style) reads its requests with `async for`.
Each message's bytes stay counted against the connection's and the server's
budgets, and are not acknowledged to the peer as flow-control window, until
the handler takes the message: a peer that sends faster than the handler
reads is held by HTTP/2 flow control, not by a growing queue.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any


class Inbox:
  """One call's decoded request messages, in order, for `async for`."""

  def __init__(
      self, loop: asyncio.AbstractEventLoop, release: Callable[[int], None]
  ):
    self._loop = loop
    self._release = release
    self._items: collections.deque[tuple[Any, int]] = collections.deque()
    self._closed = False
    self._waiter: asyncio.Future | None = None

  def put(self, message: Any, size: int) -> None:
    """A whole message arrived; `size` bytes are released when it is taken."""
    self._items.append((message, size))
    self._wake()

  def close(self) -> None:
    """The peer half-closed (or the call ended): no more messages."""
    self._closed = True
    self._wake()

  def _wake(self) -> None:
    waiter = self._waiter
    if waiter is not None and not waiter.done():
      waiter.set_result(None)

  def __aiter__(self) -> Inbox:
    return self

  async def __anext__(self) -> Any:
    while not self._items:
      if self._closed:
        raise StopAsyncIteration
      self._waiter = self._loop.create_future()
      try:
        await self._waiter
      finally:
        self._waiter = None
    message, size = self._items.popleft()
    self._release(size)
    return message
