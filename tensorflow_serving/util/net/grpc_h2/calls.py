"""The gRPC call layer over an HTTP/2 core: framing, compression, deadlines.

One `GrpcCalls` per connection turns the core's events into calls: it reads
the message's length prefix (refusing one past the limits at once,
RESOURCE_EXHAUSTED as grpc does), holds the bytes against the connection's
and the server's budgets (acknowledging them to the core, so granting
flow-control window, only while the budgets allow), inflates compressed
messages with a cap, runs the handler (a coroutine on the loop, a plain
function on the executor), and sends the answer or the status.

Unary calls are the hot path. Streaming methods (server reflection) must be
coroutines or async generators, grpc.aio style, so that an open stream never
holds an executor thread: their request messages reach the handler as they
arrive (streams.Inbox), each bounded by limits.max_stream_message_bytes, a
stream that sends nothing for limits.max_stream_idle_ms ends, and response
messages wait while the peer is not taking them.
Status codes and messages for transport-level failures follow grpcio's.
"""

from __future__ import annotations

import asyncio
import base64
import collections
from collections.abc import Callable, Sequence
import concurrent.futures
import dataclasses
import inspect
from typing import Any, Protocol
import zlib

from absl import logging
import grpc

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net import inflate
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib
from tensorflow_serving.util.net.grpc_h2 import streams

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
_TIMEOUT_UNITS = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}
_RESPONSE_HEADERS = (
    (b":status", b"200"),
    (b"content-type", b"application/grpc"),
    (b"grpc-accept-encoding", b"identity,deflate,gzip"),
)
_OK_TRAILERS = ((b"grpc-status", b"0"),)
# Compressed messages up to this size inflate on the loop (at most ~1000x:
# 16 MiB of output, ~10 ms); larger ones, and large messages' parsing, run
# on the executor so no attacker-sized step holds the loop.
_INLINE_INFLATE_BYTES = 16 << 10
_INLINE_PARSE_BYTES = 1 << 20
# A streaming handler's next response waits while this connection has more
# than this many response bytes the peer has not taken.
_STREAM_PENDING_BYTES = 1 << 20


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


class _Abort(Exception):  # noqa: N818 (control flow, not an error)
  """Raised by ServicerContext.abort to end the call with a status."""

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(details)
    self.code = code
    self.details = details


def _encode_metadata(metadata: Metadata) -> list[tuple[bytes, bytes]]:
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


def _parse_timeout(value: bytes) -> float | None:
  try:
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]
  except (ValueError, KeyError, IndexError):
    return None


class ServicerContext:
  """What a handler sees of its call; a subset of grpc.ServicerContext.

  `abort` raises from a plain function; _AsyncServicerContext's is awaited,
  as in grpc.aio.
  """

  def __init__(self, calls: GrpcCalls, call: _Call):
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
    raise _Abort(code, details)

  def send_initial_metadata(self, metadata: Metadata) -> None:
    self.initial_metadata = tuple(metadata)


class _AsyncServicerContext(ServicerContext):
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


@dataclasses.dataclass(frozen=True)
class Method:
  handler: Any  # grpc.RpcMethodHandler
  is_async: bool

  @property
  def streaming(self) -> bool:
    return self.handler.request_streaming or self.handler.response_streaming


def _method(handler: Any) -> Method:
  function = (
      handler.unary_unary
      or handler.unary_stream
      or handler.stream_unary
      or handler.stream_stream
  )
  is_async = inspect.iscoroutinefunction(
      function
  ) or inspect.isasyncgenfunction(function)
  return Method(handler, is_async)


class HandlerCallDetails(
    collections.namedtuple(
        "HandlerCallDetails", ("method", "invocation_metadata")
    ),
    grpc.HandlerCallDetails,
):
  pass


class Registry:
  """grpc.Server's handler registration, with a bounded lookup cache."""

  def __init__(self):
    self._generic: list[Any] = []
    self._methods: dict[bytes, Method | None] = {}

  def add_generic_rpc_handlers(self, handlers) -> None:
    self._generic.extend(handlers)
    self._methods.clear()

  def lookup(self, path: bytes) -> Method | None:
    try:
      return self._methods[path]
    except KeyError:
      pass
    details = HandlerCallDetails(path.decode("latin-1"), ())
    method = None
    for generic in self._generic:
      handler = generic.service(details)
      if handler is not None:
        method = _method(handler)
        break
    if len(self._methods) < 1024:  # unknown paths must not grow it forever
      self._methods[path] = method
    return method


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


class GrpcCalls:
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
    self._core = core
    self._registry = registry
    self._limits = limits
    self._max_message = limits.max_message_bytes
    self._budget = server_budget
    self._executor = executor
    self.loop = loop
    self._schedule_flush = flush
    self.peer = peer
    self.calls: dict[int, _Call] = {}
    # Bytes counted against both budgets: held request bytes, our answers
    # waiting for the peer's window, and the window granted to the peer.
    self._held = 0
    self._pending = 0
    self._window = core.recv_window
    self._debtors: dict[int, _Call] = {}
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
        timeout = _parse_timeout(value)
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

  # Budgets and flow control.

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
    if self._drain_waiters and pending <= _STREAM_PENDING_BYTES:
      waiters, self._drain_waiters = self._drain_waiters, []
      for waiter in waiters:
        if not waiter.done():
          waiter.set_result(None)

  def _release(self, call: _Call) -> None:
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

  def close_all(self) -> None:
    """The connection is gone: cancel every call, return every byte."""
    for call in list(self.calls.values()):
      call.cancelled = True
      self._close(call)
    self._budget.forget(id(self))
    self._budget.release(self._counted)
    self._counted = self._window = self._pending = self._held = 0

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
      compressed, message = self._unframe(body)
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

  # Streaming calls.

  def _start_stream(self, call: _Call, method: Method) -> None:
    """Starts a streaming handler: at once for a request stream, else once
    its one request message has arrived (call.data)."""
    if not method.is_async:
      self.finish(
          call,
          grpc.StatusCode.UNIMPLEMENTED,
          "Streaming methods must be coroutines or async generators here",
      )
      return
    handler = method.handler
    if handler.request_streaming:
      call.inbox = streams.Inbox(
          self.loop, lambda size: self._consume(call, size)
      )
      argument: Any = call.inbox
      self._touch(call)
    else:
      body = b"".join(call.data)
      call.data = []
      try:
        compressed, message = self._unframe(body)
        if compressed:
          message = self._inflate(call.encoding, message)
        argument = handler.request_deserializer(message)
      except _Abort as exc:
        self.finish(call, exc.code, exc.details)
        return
      except Exception:  # pylint: disable=broad-except
        self.finish(
            call, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        )
        return
    context = _AsyncServicerContext(self, call)
    call.context = context
    call.task = self.loop.create_task(self._stream(call, argument, context))
    call.task.add_done_callback(
        lambda done: self._on_stream_result(call, handler, done)
    )

  async def _stream(self, call: _Call, argument: Any, context: Any) -> Any:
    handler = call.method.handler  # type: ignore[union-attr]
    if not handler.response_streaming:
      return await handler.stream_unary(argument, context)
    function = (
        handler.stream_stream
        if handler.request_streaming
        else handler.unary_stream
    )
    async for response in function(argument, context):
      if call.finished:
        break
      self._send_message(call, handler.response_serializer(response))
      while self._core.pending_bytes > _STREAM_PENDING_BYTES:
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter
    return None

  def _send_message(self, call: _Call, payload: bytes) -> None:
    if not call.headers_sent:
      headers: Any = _RESPONSE_HEADERS
      context = call.context
      if context is not None and context.initial_metadata:
        headers = list(headers) + _encode_metadata(context.initial_metadata)
      self._core.send_headers(call.id, headers)
      call.headers_sent = True
    self._core.send_data(call.id, fr.grpc_message(payload))
    self.account_pending()
    self._schedule_flush()

  def _on_stream_result(
      self, call: _Call, handler: Any, done: asyncio.Future
  ) -> None:
    if call.finished or done.cancelled():
      return
    if done.exception() is None and handler.response_streaming:
      context = call.context
      if not call.headers_sent or (
          context is not None
          and context._code not in (None, grpc.StatusCode.OK)  # pylint: disable=protected-access
      ):
        self._on_result(call, handler, done)  # trailers-only, or its status
        return
      trailers: Any = _OK_TRAILERS
      if context is not None and context.trailing_metadata:
        trailers = list(trailers) + _encode_metadata(context.trailing_metadata)
      self._core.send_headers(call.id, trailers, end_stream=True)
      self._close(call)
      self._schedule_flush()
      return
    self._on_result(call, handler, done)

  def _feed(self, call: _Call) -> None:
    """Hands a streaming call's whole messages to its handler."""
    inbox = call.inbox
    deserialize = call.method.handler.request_deserializer  # type: ignore[union-attr]
    while 0 <= call.expected <= call.size and not call.finished:
      data = b"".join(call.data)
      size = call.expected
      compressed, message = bool(data[0]), data[5:size]
      rest = data[size:]
      call.data = [rest] if rest else []
      call.size = len(rest)
      call.expected = -1
      if len(rest) >= 5:
        call.expected = fr.U32.unpack_from(rest, 1)[0] + 5
        if call.expected - 5 > self._limits.max_stream_message_bytes:
          self.finish(
              call,
              grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"Received message larger than max ({call.expected - 5} vs. "
              f"{self._limits.max_stream_message_bytes})",
          )
          return
      try:
        if compressed:
          message = self._inflate(call.encoding, message)
        request = deserialize(message)
      except _Abort as exc:
        self.finish(call, exc.code, exc.details)
        return
      except Exception:  # pylint: disable=broad-except
        self.finish(
            call, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        )
        return
      inbox.put(request, size)  # type: ignore[union-attr]
      self._touch(call)

  def _grant(self, call: _Call) -> None:
    """Acknowledges a streaming call's bytes while it has less than one
    largest message waiting for its handler: a peer that sends faster than
    the handler takes is stopped by flow control, not queued for."""
    room = self._limits.max_stream_message_bytes + 5 - (call.held - call.debt)
    ack = min(call.debt, max(0, room))
    if ack:
      call.debt -= ack
      self._ack(ack, call.id)

  def _consume(self, call: _Call, size: int) -> None:
    """The handler took a message: its bytes leave the budgets."""
    if call.finished or not call.held:
      return
    size = min(size, call.held - call.debt)
    call.held -= size
    self._held -= size
    self._sync()
    self._grant(call)
    self._schedule_flush()

  def _touch(self, call: _Call) -> None:
    """(Re)arms a streaming call's idle timer."""
    idle_ms = self._limits.max_stream_idle_ms
    if idle_ms is None:
      return
    if call.idle is not None:
      call.idle.cancel()
    call.idle = self.loop.call_later(idle_ms / 1000.0, self._on_idle, call)

  def _on_idle(self, call: _Call) -> None:
    call.idle = None
    if not call.finished:
      self.finish(
          call,
          grpc.StatusCode.UNAVAILABLE,
          "Stream idle for longer than "
          f"{self._limits.max_stream_idle_ms} ms",
      )

  def _unframe(self, body: bytes) -> tuple[bool, bytes]:
    if len(body) < 5:
      raise _Abort(
          grpc.StatusCode.INTERNAL,
          "Expected one request message, received none",
      )
    length = fr.U32.unpack_from(body, 1)[0]
    if length != len(body) - 5:
      raise _Abort(
          grpc.StatusCode.INTERNAL,
          "Expected one request message, received a malformed one",
      )
    return bool(body[0]), body[5:]

  def _inflate(self, encoding: bytes, message: bytes) -> bytes:
    """Inflates with a cap on the result (limits.max_inflated_bytes)."""
    if encoding == b"gzip":
      wbits = 31
    elif encoding == b"deflate":
      wbits = zlib.MAX_WBITS
    else:
      raise _Abort(
          grpc.StatusCode.UNIMPLEMENTED,
          "Compression algorithm "
          f"'{encoding.decode('latin-1')}' is not supported",
      )
    limit = self._limits.max_inflated_bytes
    try:
      return inflate.inflate(message, wbits, limit)
    except inflate.TooLarge as exc:
      raise _Abort(
          grpc.StatusCode.RESOURCE_EXHAUSTED,
          "Received message larger than max (more than "
          f"{exc.limit} bytes once decompressed vs. {limit})",
      ) from exc
    except zlib.error as exc:
      raise _Abort(
          grpc.StatusCode.INTERNAL, f"Failed to decompress the request: {exc}"
      ) from exc

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
