"""The gRPC call layer over an HTTP/2 core: one connection's unary calls.

One `GrpcCalls` per connection turns the core's events into calls: it reads
the message's length prefix (refusing one past the limits at once,
RESOURCE_EXHAUSTED as grpc does), holds the bytes against the connection's
and the server's budgets (flow_accounting.py: acknowledging them to the
core, so granting flow-control window, only while the budgets allow),
inflates compressed messages with a cap (messages.py), runs the handler (a
coroutine on the loop, a plain function on the executor), and sends the
answer or the status.

Unary calls are the hot path, and this module holds it. Streaming methods
(server reflection) are streaming_calls.py's; what a handler sees of its
call is servicer_context.py's, and which handler a path names registry.py's.
Status codes and messages for transport-level failures follow grpcio's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import concurrent.futures
from typing import Any, Protocol

from absl import logging
import grpc

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import flow_accounting
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib
from tensorflow_serving.util.net.grpc_h2 import messages
from tensorflow_serving.util.net.grpc_h2 import registry as registry_lib
from tensorflow_serving.util.net.grpc_h2 import servicer_context
from tensorflow_serving.util.net.grpc_h2 import streaming_calls
from tensorflow_serving.util.net.grpc_h2 import streams

# Module globals, as before the split: the unary path reads them per call.
ServicerContext = servicer_context.ServicerContext
Registry = registry_lib.Registry
Method = registry_lib.Method
_Abort = servicer_context.Abort
_AsyncServicerContext = servicer_context.AsyncServicerContext
_RESPONSE_HEADERS = messages.RESPONSE_HEADERS
_OK_TRAILERS = messages.OK_TRAILERS
_encode_metadata = servicer_context.encode_metadata

# Compressed messages up to this size inflate on the loop (at most ~1000x:
# 16 MiB of output, ~10 ms); larger ones, and large messages' parsing, run
# on the executor so no attacker-sized step holds the loop.
_INLINE_INFLATE_BYTES = 16 << 10
_INLINE_PARSE_BYTES = 1 << 20


class Core(Protocol):
  """The HTTP/2 core's methods the call layer uses (connection.py, h2_core)."""

  recv_window: int
  pending_bytes: int

  def acknowledge_received_data(self, size: int, stream_id: int) -> None:
    ...

  def send_headers(self, stream_id, headers, end_stream=False) -> None:
    ...

  def send_data(self, stream_id, data, end_stream=False) -> None:
    ...

  def send_response(self, stream_id, headers, data, trailers) -> None:
    ...

  def reset_stream(self, stream_id: int, error_code: int) -> None:
    ...


class _Call:
  """One call: its request as it arrives, then its handler."""

  __slots__ = (
      "id",
      "headers",
      "path",
      "encoding",
      "data",
      "size",
      "expected",
      "held",
      "debt",
      "ended",
      "finished",
      "cancelled",
      "deadline",
      "timer",
      "task",
      "context",
      "method",
      "inbox",
      "idle",
      "headers_sent",
  )

  def __init__(self, stream_id: int, headers):
    self.id = stream_id
    self.headers = headers
    self.path = b""
    self.encoding = b"identity"  # grpc-encoding of the request message
    self.data: list[bytes] = []
    self.size = 0
    self.expected = -1  # bytes the length prefix announced, prefix included
    self.held = 0  # flow-controlled bytes counted against the budgets
    self.debt = 0  # of those, not yet acknowledged to the core
    self.ended = False
    self.finished = False
    self.cancelled = False
    self.deadline: float | None = None
    self.timer: asyncio.TimerHandle | None = None
    self.task: asyncio.Future | None = None
    self.context: ServicerContext | None = None
    self.method: Method | None = None
    # Streaming calls only: the requests so far, the idle timer, and
    # whether response headers went out (trailers then follow alone).
    self.inbox: streams.Inbox | None = None
    self.idle: asyncio.TimerHandle | None = None
    self.headers_sent = False


class GrpcCalls(flow_accounting.FlowAccounting, streaming_calls.StreamingCalls):
  """The calls of one connection, over its HTTP/2 core."""

  def __init__(
      self,
      core: Core,
      registry: Registry,
      limits: limits_lib.GrpcLimits,
      server_budget: budget_lib.Budget,
      executor: concurrent.futures.Executor | None,
      loop: asyncio.AbstractEventLoop,
      flush: Callable[[], None],
      peer: str = "",
  ):
    self._registry = registry
    self._max_message = limits.max_message_bytes
    self._executor = executor
    self.loop = loop
    self.peer = peer
    self.calls: dict[int, _Call] = {}
    super().__init__(core, limits, server_budget, flush)

  # Events.

  def handle(self, events: list[ev.Event]) -> list[ev.Event]:
    """Runs the call events; returns the connection's (pings, GOAWAY, ...)."""
    others = []
    for event in events:
      kind = type(event)
      if kind is ev.DataReceived:
        self._on_data(event)
      elif kind is ev.RequestReceived:
        self._on_request(event)
      elif kind is ev.StreamEnded:
        call = self.calls.get(event.stream_id)
        if call is not None and not call.ended:
          call.ended = True
          if call.inbox is not None:
            call.inbox.close()
          else:
            self._dispatch(call)
      elif kind is ev.StreamReset:
        call = self.calls.get(event.stream_id)
        if call is not None:
          call.cancelled = True
          self._close(call)
      else:
        others.append(event)
    return others

  def _on_request(self, event: ev.RequestReceived) -> None:
    call = _Call(event.stream_id, event.headers)
    self.calls[call.id] = call
    method = content_type = None
    # The one pass over the request's headers; the call reads these later.
    for name, value in event.headers:
      if name == b":path":
        call.path = value
      elif name == b":method":
        method = value
      elif name == b"grpc-encoding":
        call.encoding = value
      elif name == b"content-type":
        content_type = value
      elif name == b"grpc-timeout":
        timeout = messages.parse_timeout(value)
        if timeout is not None:
          call.deadline = self.loop.time() + timeout
          call.timer = self.loop.call_at(call.deadline, self._expire, call)
    limit = self._limits.max_metadata_size
    if event.headers_size > limit:
      self.finish(
          call,
          grpc.StatusCode.RESOURCE_EXHAUSTED,
          f"received metadata size exceeds hard limit "
          f"({event.headers_size} vs. {limit})",
      )
    elif method != b"POST":
      self._http_error(call, b"405")
    elif content_type is None or not content_type.startswith(
        b"application/grpc"
    ):
      self._http_error(call, b"415")
    else:
      method = call.method = self._registry.lookup(call.path)
      if method is not None and method.handler.request_streaming:
        self._start_stream(call, method)
        if event.end_stream:
          call.ended = True
          call.inbox.close()  # type: ignore[union-attr]
      elif event.end_stream:
        call.ended = True
        self._dispatch(call)

  def _on_data(self, event: ev.DataReceived) -> None:
    received = event.flow_controlled_length
    call = self.calls.get(event.stream_id)
    if call is None or call.finished:
      # Answered already: nobody holds these bytes.
      self._core.acknowledge_received_data(received, event.stream_id)
      return
    self._window -= received
    self._held += received
    call.held += received
    call.debt += received
    data = event.data
    call.data.append(data)
    call.size += len(data)
    if call.expected < 0 and call.size >= 5:
      head = call.data[0] if len(call.data[0]) >= 5 else b"".join(call.data)
      length = fr.U32.unpack_from(head, 1)[0]
      call.expected = length + 5
      if call.inbox is not None:
        if length > self._limits.max_stream_message_bytes:
          self.finish(
              call,
              grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"Received message larger than max ({length} vs. "
              f"{self._limits.max_stream_message_bytes})",
          )
          return
      elif length > self._max_message:
        self._refuse_size(call, length)
        return
    if 0 <= call.expected < call.size and call.inbox is None:
      self.finish(
          call,
          grpc.StatusCode.INTERNAL,
          "Expected one request message, received a malformed one",
      )
      return
    if call.inbox is not None:
      self._sync()
      self._grant(call)
      self._feed(call)
      if event.end_stream and not call.finished:
        call.ended = True
        call.inbox.close()
      return
    budget = self._budget
    if (
        not self._debtors
        and self._counted + received <= self._limits.max_connection_buffer_bytes
        and budget.used + received <= budget.limit
    ):
      # The common case, inlined: room in both budgets, window back at once
      # (the bytes move from window to held, and the window is restored).
      call.debt = 0
      self._core.acknowledge_received_data(received, call.id)
      self._window += received
      self._counted += received
      budget.used += received
    else:
      self._debtors[call.id] = call
      self._sync()
      self._repay()
    if event.end_stream:
      call.ended = True
      self._dispatch(call)

  def _refuse_size(self, call: _Call, length: int) -> None:
    limit = self._limits.max_receive_message_length
    if length <= limit:  # it is the budget that cannot take it
      limit = self._max_message
    self.finish(
        call,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"Received message larger than max ({length} vs. {limit})",
    )

  def close_all(self) -> None:
    """The connection is gone: cancel every call, return every byte."""
    for call in list(self.calls.values()):
      call.cancelled = True
      self._close(call)
    self._return_all()

  # Calls.

  def _dispatch(self, call: _Call) -> None:
    """Runs the call once its request has fully arrived."""
    method = call.method
    if method is None:
      self.finish(
          call,
          grpc.StatusCode.UNIMPLEMENTED,
          f"Method not found: {call.path.decode('latin-1')}",
      )
      return
    handler = method.handler
    if method.streaming:
      self._start_stream(call, method)
      return
    body = call.data[0] if len(call.data) == 1 else b"".join(call.data)
    call.data = []
    try:
      compressed, message = messages.unframe(body)
    except _Abort as exc:
      self.finish(call, exc.code, exc.details)
      return
    if compressed or len(message) > _INLINE_PARSE_BYTES:
      if compressed and len(message) <= _INLINE_INFLATE_BYTES:
        try:
          message = self._inflate(call.encoding, message)
        except _Abort as exc:
          self.finish(call, exc.code, exc.details)
          return
        compressed = False
      if compressed or len(message) > _INLINE_PARSE_BYTES:
        task = self.loop.create_task(
            self._decode_off_loop(call, method, compressed, message)
        )
        call.task = task
        return
    try:
      request = handler.request_deserializer(message)
    except Exception:  # pylint: disable=broad-except
      self.finish(
          call, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
      )
      return
    # _run, inlined on the hot path.
    if method.is_async:
      context = _AsyncServicerContext(self, call)
      task = self.loop.create_task(handler.unary_unary(request, context))
    else:
      context = ServicerContext(self, call)
      task = self.loop.run_in_executor(
          self._executor, handler.unary_unary, request, context
      )
    call.context = context
    call.task = task
    task.add_done_callback(lambda done: self._on_result(call, handler, done))

  async def _decode_off_loop(
      self, call: _Call, method: Method, compressed: bool, message: bytes
  ) -> None:
    def decode():
      data = self._inflate(call.encoding, message) if compressed else message
      try:
        return method.handler.request_deserializer(data)
      except Exception as exc:  # pylint: disable=broad-except
        raise _Abort(
            grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        ) from exc

    try:
      request = await self.loop.run_in_executor(self._executor, decode)
    except _Abort as exc:
      self.finish(call, exc.code, exc.details)
      self._schedule_flush()
      return
    if not call.finished:
      call.task = None
      self._run(call, method, request)

  def _run(self, call: _Call, method: Method, request: Any) -> None:
    handler = method.handler
    if method.is_async:
      context = _AsyncServicerContext(self, call)
      task = self.loop.create_task(handler.unary_unary(request, context))
    else:
      context = ServicerContext(self, call)
      task = self.loop.run_in_executor(
          self._executor, handler.unary_unary, request, context
      )
    call.context = context
    call.task = task
    task.add_done_callback(lambda done: self._on_result(call, handler, done))

  def _inflate(self, encoding: bytes, message: bytes) -> bytes:
    return messages.inflate_message(
        encoding, message, self._limits.max_inflated_bytes
    )

  def _on_result(self, call: _Call, handler: Any, done: asyncio.Future) -> None:
    if call.finished or done.cancelled():
      return
    context = call.context
    exc = done.exception()
    if isinstance(exc, _Abort):
      self.finish(call, exc.code, exc.details)
    elif exc is not None:
      logging.error(
          "Exception calling application: %r",
          exc,
          exc_info=(type(exc), exc, exc.__traceback__),
      )
      self.finish(
          call,
          grpc.StatusCode.UNKNOWN,
          f"Exception calling application: {exc}",
      )
    elif context._code not in (None, grpc.StatusCode.OK):  # pylint: disable=protected-access
      self.finish(call, context._code, context._details)  # pylint: disable=protected-access
    else:
      try:
        payload = handler.response_serializer(done.result())
      except Exception:  # pylint: disable=broad-except
        self.finish(
            call, grpc.StatusCode.INTERNAL, "Failed to serialize response!"
        )
        return
      self._respond(call, payload)
    self._schedule_flush()

  def _respond(self, call: _Call, payload: bytes) -> None:
    context = call.context
    headers: Any = _RESPONSE_HEADERS
    trailers: Any = _OK_TRAILERS
    if context is not None:
      if context.initial_metadata:
        headers = list(headers) + _encode_metadata(context.initial_metadata)
      if context.trailing_metadata:
        trailers = list(trailers) + _encode_metadata(context.trailing_metadata)
    core = self._core
    core.send_response(call.id, headers, fr.grpc_message(payload), trailers)
    self._close(call)
    if core.pending_bytes != self._pending:
      self.account_pending()

  def finish(self, call: _Call, code: grpc.StatusCode, details: str) -> None:
    """Ends a call with a non-OK status (trailers-only)."""
    if call.finished:
      return
    # After a streaming call's messages, the status goes out as trailers.
    block = [] if call.headers_sent else list(_RESPONSE_HEADERS)
    block.append((b"grpc-status", b"%d" % code.value[0]))
    if details:
      block.append((b"grpc-message", fr.percent_encode(details)))
    context = call.context
    if context is not None and context.trailing_metadata:
      block += _encode_metadata(context.trailing_metadata)
    self._core.send_headers(call.id, block, end_stream=True)
    self._close(call)
    self._schedule_flush()

  def _http_error(self, call: _Call, http_status: bytes) -> None:
    self._core.send_headers(call.id, ((b":status", http_status),), True)
    self._close(call)

  def _expire(self, call: _Call) -> None:
    call.timer = None
    if not call.finished:
      self.finish(call, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

  def _close(self, call: _Call) -> None:
    call.finished = True
    self.calls.pop(call.id, None)
    if call.timer is not None:
      call.timer.cancel()
      call.timer = None
    if call.inbox is not None:
      call.inbox.close()
      if call.idle is not None:
        call.idle.cancel()
        call.idle = None
    task = call.task
    if task is not None and not task.done():
      task.cancel()
    self._release(call)
