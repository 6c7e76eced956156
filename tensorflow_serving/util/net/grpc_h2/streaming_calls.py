"""Streaming gRPC calls (server reflection): grpc.aio-style handlers only.

A mixin of calls.GrpcCalls, apart from the unary hot path. An open stream
never holds an executor thread: its handler is a coroutine or an async
generator. Request messages reach it as they arrive (streams.Inbox), each
bounded by limits.max_stream_message_bytes, and their bytes leave the
budgets as the handler takes them; a stream that sends nothing for
limits.max_stream_idle_ms ends; response messages wait while the peer is
not taking them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from tensorflow_serving.util.net.grpc_h2 import flow_accounting
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import messages
from tensorflow_serving.util.net.grpc_h2 import registry as registry_lib
from tensorflow_serving.util.net.grpc_h2 import servicer_context
from tensorflow_serving.util.net.grpc_h2 import streams


class StreamingCalls:
  """calls.GrpcCalls' streaming half; its state is GrpcCalls'."""

  # What it uses of GrpcCalls and FlowAccounting: these, and their
  # finish, _close, _on_result, _inflate, _ack and _schedule_flush.
  loop: asyncio.AbstractEventLoop
  _core: Any
  _limits: Any
  _drain_waiters: list[asyncio.Future]

  def _start_stream(self, call: Any, method: registry_lib.Method) -> None:
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
        compressed, message = messages.unframe(body)
        if compressed:
          message = self._inflate(call.encoding, message)
        argument = handler.request_deserializer(message)
      except servicer_context.Abort as exc:
        self.finish(call, exc.code, exc.details)
        return
      except Exception:  # pylint: disable=broad-except
        self.finish(
            call, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        )
        return
    context = servicer_context.AsyncServicerContext(self, call)
    call.context = context
    call.task = self.loop.create_task(self._stream(call, argument, context))
    call.task.add_done_callback(
        lambda done: self._on_stream_result(call, handler, done)
    )

  async def _stream(self, call: Any, argument: Any, context: Any) -> Any:
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
      while self._core.pending_bytes > flow_accounting.STREAM_PENDING_BYTES:
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter
    return None

  def _send_message(self, call: Any, payload: bytes) -> None:
    if not call.headers_sent:
      headers: Any = messages.RESPONSE_HEADERS
      context = call.context
      if context is not None and context.initial_metadata:
        headers = list(headers) + servicer_context.encode_metadata(
            context.initial_metadata
        )
      self._core.send_headers(call.id, headers)
      call.headers_sent = True
    self._core.send_data(call.id, fr.grpc_message(payload))
    self.account_pending()
    self._schedule_flush()

  def _on_stream_result(
      self, call: Any, handler: Any, done: asyncio.Future
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
      trailers: Any = messages.OK_TRAILERS
      if context is not None and context.trailing_metadata:
        trailers = list(trailers) + servicer_context.encode_metadata(
            context.trailing_metadata
        )
      self._core.send_headers(call.id, trailers, end_stream=True)
      self._close(call)
      self._schedule_flush()
      return
    self._on_result(call, handler, done)

  def _feed(self, call: Any) -> None:
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
      except servicer_context.Abort as exc:
        self.finish(call, exc.code, exc.details)
        return
      except Exception:  # pylint: disable=broad-except
        self.finish(
            call, grpc.StatusCode.INTERNAL, "Exception deserializing request!"
        )
        return
      inbox.put(request, size)  # type: ignore[union-attr]
      self._touch(call)

  def _grant(self, call: Any) -> None:
    """Acknowledges a streaming call's bytes while it has less than one
    largest message waiting for its handler: a peer that sends faster than
    the handler takes is stopped by flow control, not queued for."""
    room = self._limits.max_stream_message_bytes + 5 - (call.held - call.debt)
    ack = min(call.debt, max(0, room))
    if ack:
      call.debt -= ack
      self._ack(ack, call.id)

  def _consume(self, call: Any, size: int) -> None:
    """The handler took a message: its bytes leave the budgets."""
    if call.finished or not call.held:
      return
    size = min(size, call.held - call.debt)
    call.held -= size
    self._held -= size
    self._sync()
    self._grant(call)
    self._schedule_flush()

  def _touch(self, call: Any) -> None:
    """(Re)arms a streaming call's idle timer."""
    idle_ms = self._limits.max_stream_idle_ms
    if idle_ms is None:
      return
    if call.idle is not None:
      call.idle.cancel()
    call.idle = self.loop.call_later(idle_ms / 1000.0, self._on_idle, call)

  def _on_idle(self, call: Any) -> None:
    call.idle = None
    if not call.finished:
      self.finish(
          call,
          grpc.StatusCode.UNAVAILABLE,
          "Stream idle for longer than "
          f"{self._limits.max_stream_idle_ms} ms",
      )
