"""Admission of model runs: overload is refused early, not queued to time out.

Past its capacity a server that queues everything makes every request late:
each waits behind the ones that will miss their deadline anyway, and the
clients time out having used the capacity for nothing. Here a request whose
deadline cannot be met is refused at once with UNAVAILABLE (HTTP 503) and a
hint of when to retry, and the ones admitted finish in time.

The rule, applied when a model run is about to be queued (the worker pool
or the batcher), on the event loop:

    refuse if  pending >= min_pending_to_shed
          and  service_s + pending * cost_s > HEADROOM * (deadline - now)

`pending` counts the runs admitted and not yet finished (queued or
running); `cost_s` is the measured capacity, seconds of busy time per
finished run (the best of the last few windows, so a run that happened to
find the server idle does not make it look slower than it is); `service_s`
is what a run takes beyond its share of the queue (a moving average of each
finished run's latency less `pending * cost_s` at its admission). A request
with no deadline is never refused by this rule, and neither is one that
finds fewer runs ahead than the server runs at once (`min_pending_to_shed`,
the worker threads): under normal load nothing queues, so nothing is
refused that upstream would answer. HEADROOM keeps the runs admitted under
overload clear of their deadlines when run times vary (a run admitted to
end just in time misses by any noise, and is capacity spent for nothing);
it costs no throughput, since the queue still never runs dry.

`max_pending` bounds the queue whatever the deadlines: past it a run is
refused the same way. `shed_by_deadline=False` (--shed_by_deadline=false)
keeps only that bound: runs queue until their deadline as upstream's do,
which is what the overload benchmark compares against.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
import math
import time

from tensorflow_serving.util import status

# A measurement window closes after this many finished runs or this much
# busy time, whichever comes first; the best of the last few is the cost.
_WINDOW_RUNS = 32
_WINDOW_S = 0.25
_WINDOWS_KEPT = 8
# Weight of each finished run in the moving average of service time.
_SERVICE_ALPHA = 0.1
# The share of a request's remaining time its expected wait and run may
# fill (once runs queue at all).
HEADROOM = 0.8
# The retry hint when nothing is measured yet.
DEFAULT_RETRY_S = 1.0
# The default for --max_pending_requests.
DEFAULT_MAX_PENDING = 10000


class Admission:
  """Counts model runs in flight and refuses those that cannot finish in time.

  Used from one thread (the event loop): `admit` before a run is queued,
  `finished` when it completes (either way).
  """

  def __init__(
      self,
      max_pending: int = DEFAULT_MAX_PENDING,
      min_pending_to_shed: int = 1,
      clock: Callable[[], float] = time.monotonic,
      shed_by_deadline: bool = True,
  ):
    self.max_pending = max_pending
    self.shed_by_deadline = shed_by_deadline
    self.min_pending_to_shed = max(1, min_pending_to_shed)
    self._clock = clock
    self.pending = 0
    self.shed = 0
    self._last = clock()
    self._busy_s = 0.0
    self._finished_in_window = 0
    self._window_costs: collections.deque[float] = collections.deque(
        maxlen=_WINDOWS_KEPT
    )
    self.cost_s: float | None = None
    self.service_s: float | None = None

  def estimate_s(self, pending: int) -> float | None:
    """Seconds a run admitted now with `pending` ahead is expected to take."""
    if self.cost_s is None:
      return None
    return (self.service_s or 0.0) + pending * self.cost_s

  def admit(self, deadline: float | None) -> float:
    """Admits one run (returns the time of admission) or raises UNAVAILABLE.

    `deadline` is on this object's clock (time.monotonic by default).
    """
    now = self._clock()
    self._account(now)
    self._refuse_if_late(now, deadline)
    self.pending += 1
    return now

  def check(self, deadline: float | None) -> None:
    """Raises what `admit` would, admitting nothing.

    Called before a request body is decoded: under overload most requests
    are refused, and decoding each first spends CPU that serving needs on
    bodies that are thrown away.
    """
    self._refuse_if_late(self._clock(), deadline)

  def _refuse_if_late(self, now: float, deadline: float | None) -> None:
    pending = self.pending
    if pending >= self.max_pending:
      self.shed += 1
      raise status.ServingError(
          status.Code.UNAVAILABLE,
          f"Server overloaded: {pending} model runs already pending (the "
          "limit set by --max_pending_requests); retry later",
          retry_after_s=self._retry_after_s(pending),
      )
    if (
        self.shed_by_deadline
        and deadline is not None
        and pending >= self.min_pending_to_shed
    ):
      expected = self.estimate_s(pending)
      if expected is not None and expected > HEADROOM * (deadline - now):
        self.shed += 1
        raise status.ServingError(
            status.Code.UNAVAILABLE,
            "Server overloaded: this request would take an estimated "
            f"{expected * 1000:.0f} ms ({pending} model runs ahead of it), "
            f"more than the {max(0.0, deadline - now) * 1000:.0f} ms left "
            "before its deadline; retry later",
            retry_after_s=self._retry_after_s(pending),
        )

  def finished(self, admitted_at: float, pending_at_admission: int) -> None:
    """A run admitted at `admitted_at` is done (or failed, or was cancelled)."""
    now = self._clock()
    self._account(now)
    self.pending -= 1
    self._finished_in_window += 1
    # Runs finishing together (a batch) add no busy time after the first:
    # they count in the window that measures the time they took.
    if self._busy_s > 0 and (
        self._finished_in_window >= _WINDOW_RUNS or self._busy_s >= _WINDOW_S
    ):
      self._window_costs.append(self._busy_s / self._finished_in_window)
      self.cost_s = min(self._window_costs)
      self._busy_s = 0.0
      self._finished_in_window = 0
    if self.cost_s is not None:
      residual = max(
          0.0, now - admitted_at - pending_at_admission * self.cost_s
      )
      self.service_s = (
          residual
          if self.service_s is None
          else self.service_s + _SERVICE_ALPHA * (residual - self.service_s)
      )

  def _account(self, now: float) -> None:
    """Busy time is time with at least one run pending."""
    if self.pending:
      self._busy_s += now - self._last
    self._last = now

  def _retry_after_s(self, pending: int) -> float:
    """Roughly when the runs pending now will have drained."""
    if self.cost_s is None:
      return DEFAULT_RETRY_S
    return max(0.001, pending * self.cost_s)


def retry_after_header(retry_after_s: float) -> str:
  """HTTP's Retry-After: whole seconds, at least one."""
  return str(max(1, math.ceil(retry_after_s)))


def retry_pushback_ms(retry_after_s: float) -> str:
  """gRPC's grpc-retry-pushback-ms trailer (its retry policy honours it)."""
  return str(max(1, math.ceil(retry_after_s * 1000)))
