"""A connection's byte accounting: what it holds against its budgets.

Request bytes held until their call is done, answers waiting for the
peer's window, and window granted beyond HTTP/2's initial one all count,
against the connection's limit (limits.max_connection_buffer_bytes) and
the server's shared budget. Received bytes are acknowledged to the HTTP/2
core (granting window back to the peer) only while both have room, so a
peer that sends faster than the server frees memory is held back by flow
control instead of queued for. The unary hot path repeats the common case
inline (calls.GrpcCalls._on_data).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

# A streaming handler's next response waits while this connection has more
# than this many response bytes the peer has not taken.
STREAM_PENDING_BYTES = 1 << 20


class FlowAccounting:
  """The budgets' side of one connection's calls (calls.GrpcCalls)."""

  def __init__(
      self,
      core: Any,
      limits: limits_lib.GrpcLimits,
      server_budget: budget_lib.Budget,
      flush: Callable[[], None],
  ):
    self._core = core
    self._limits = limits
    self._budget = server_budget
    self._schedule_flush = flush
    # Bytes counted against both budgets: held request bytes, our answers
    # waiting for the peer's window, and the window granted to the peer.
    self._held = 0
    self._pending = 0
    self._window = core.recv_window
    self._debtors: dict[int, Any] = {}  # stream id -> calls._Call
    self._counted = 0  # what this connection has added to the server budget
    self._drain_waiters: list[asyncio.Future] = []
    self._sync()

  def _committed(self) -> int:
    """Held bytes plus the window granted beyond HTTP/2's initial 64 KiB.

    The initial window is every connection's by the protocol, so it is not
    charged: idle connections must not use up the budget of busy ones. What
    a peer actually sends within it is charged once held.
    """
    return self._held + self._pending + max(0, self._window - fr.DEFAULT_WINDOW)

  def _sync(self) -> None:
    delta = self._committed() - self._counted
    if delta:
      self._counted += delta
      if delta > 0:
        self._budget.add(delta)
      else:
        self._budget.release(-delta)

  @property
  def held_bytes(self) -> int:
    """Request bytes held and answers not yet taken by the peer."""
    return self._held + self._pending

  def _repay(self) -> None:
    """Acknowledges held bytes while both budgets have room for the window."""
    budget = self._budget
    limit = self._limits.max_connection_buffer_bytes
    for call in list(self._debtors.values()):
      debt = call.debt
      if self._counted + debt > limit or budget.used + debt > budget.limit:
        if budget.used + debt > budget.limit:
          budget.wait(id(self), self._on_budget_freed)
        return
      del self._debtors[call.id]
      call.debt = 0
      self._ack(debt, call.id)

  def _ack(self, size: int, stream_id: int) -> None:
    self._core.acknowledge_received_data(size, stream_id)
    self._window += size
    self._sync()

  def _on_budget_freed(self) -> None:
    if self._debtors:
      self._repay()
      self._schedule_flush()

  def account_pending(self) -> None:
    """Counts our answers still waiting for window (after every send)."""
    pending = self._core.pending_bytes
    if pending != self._pending:
      self._pending = pending
      self._sync()
    if self._drain_waiters and pending <= STREAM_PENDING_BYTES:
      waiters, self._drain_waiters = self._drain_waiters, []
      for waiter in waiters:
        if not waiter.done():
          waiter.set_result(None)

  def _release(self, call: Any) -> None:
    """Frees a finished call's bytes; unacknowledged ones go back as window."""
    if call.held:
      self._debtors.pop(call.id, None)
      self._held -= call.held
      # The debt becomes window again; the rest leaves the budgets.
      if call.debt:
        self._core.acknowledge_received_data(call.debt, call.id)
        self._window += call.debt
      call.held = call.debt = 0
      self._sync()
      if self._debtors:
        self._repay()

  def _return_all(self) -> None:
    """The connection is gone: every byte it counted leaves the budget."""
    self._budget.forget(id(self))
    self._budget.release(self._counted)
    self._counted = self._window = self._pending = self._held = 0
