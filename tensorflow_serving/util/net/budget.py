"""A server-wide budget of buffered bytes, shared by a server's connections.

Connections reserve what they hold (request bodies being received, answers
a slow reader has not taken) and, for HTTP/2, the flow-control window they
have granted; past the limit they stop granting window or stop reading, so
memory is bounded by configuration: back-pressure instead of growth.
"""

from __future__ import annotations

from collections.abc import Callable


class Budget:
  """Bytes in use against a limit; waiters are called back when some free."""

  __slots__ = ("limit", "used", "_waiters")

  def __init__(self, limit: int):
    self.limit = limit
    self.used = 0
    self._waiters: dict[int, Callable[[], None]] = {}

  def room(self) -> int:
    return self.limit - self.used

  def add(self, size: int) -> None:
    self.used += size

  def release(self, size: int) -> None:
    self.used -= size
    if self._waiters and self.used < self.limit:
      waiters = list(self._waiters.values())
      self._waiters.clear()
      for wake in waiters:
        wake()

  def wait(self, key: int, wake: Callable[[], None]) -> None:
    """Calls `wake` once, the next time bytes are released under the limit."""
    self._waiters[key] = wake

  def forget(self, key: int) -> None:
    self._waiters.pop(key, None)
