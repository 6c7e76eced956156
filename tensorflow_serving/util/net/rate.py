"""Token buckets for abuse detection, on a clock the caller passes in.

The protocol cores are sans-IO, so they never read the time themselves: the
glue hands them a clock (time.monotonic, or a fake one in tests).
"""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
  """`burst` tokens, refilled at `rate` per second; `take` says if any left."""

  __slots__ = ("_burst", "_rate", "_tokens", "_stamp", "_clock")

  def __init__(self, burst: int, rate: float, clock: Callable[[], float]):
    self._burst = float(burst)
    self._rate = rate
    self._tokens = float(burst)
    self._clock = clock
    self._stamp = clock()

  def take(self, cost: float = 1.0) -> bool:
    """Spends `cost`; False once the bucket is empty (the caller acts)."""
    now = self._clock()
    tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
    self._stamp = now
    if tokens < cost:
      self._tokens = tokens
      return False
    self._tokens = tokens - cost
    return True
