"""A gRPC server on asyncio, over a sans-IO HTTP/2 core.

Why not grpcio's server: on this project's 2-core reference host, grpcio's
Python layer costs 400+ us of CPU per call (sync server, about twice that on
grpc.aio), several times what a batched model run costs per row, so it capped
the server's throughput whatever batching did. Every method of upstream's
PredictionService and ModelService is unary, and a unary call over HTTP/2 is
small: one HEADERS (+ CONTINUATION) and DATA in, one HEADERS + DATA + trailers
out. Handling those frames on the event loop, with responses of one loop turn
coalesced into one write, costs a fraction of that.

Three layers: the HTTP/2 state machine (connection.py, or h2_core.py over
python-hyper h2), the gRPC calls (calls.py), and this thin asyncio glue:
sockets, TLS, timers (handshake, keepalive, idle, age), reading paused while
a connection is over its budget or its peer is not reading.

Handlers register exactly as with grpcio (`add_XServicer_to_server` from the
generated `*_pb2_grpc` modules, grpc's `method_handlers_generic_handler`), and
may be coroutines (awaited on the loop, grpc.aio style) or plain functions (run
on an executor, grpc sync style). Streaming methods (server reflection) must
be grpc.aio style, so that an open stream holds no thread. What it does not do:
response compression (requests may be gzip or deflate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import concurrent.futures
import os
import socket
import ssl
import stat
import struct
import time
from typing import Any

from absl import logging
import grpc

from tensorflow_serving.util.net import budget as budget_lib
from tensorflow_serving.util.net import tls
from tensorflow_serving.util.net.grpc_h2 import calls as calls_lib
from tensorflow_serving.util.net.grpc_h2 import connection as connection_lib
from tensorflow_serving.util.net.grpc_h2 import events as ev
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as limits_lib

ServicerContext = calls_lib.ServicerContext
# Receive windows we grant: for the whole connection (budget permitting),
# and each stream's initial one.
CONNECTION_WINDOW = 16 << 20
STREAM_WINDOW = 4 << 20
ENGINES = ("native", "h2")
# Pending connections the kernel may queue (asyncio's default is 100): a
# flood of connections must not crowd legit ones out of the accept queue.
LISTEN_BACKLOG = 4096
# At most one warning line per this many seconds for misbehaving peers.
_WARN_EVERY_S = 5.0


def _make_core(engine: str, limits: limits_lib.GrpcLimits):
  if engine == "h2":
    from tensorflow_serving.util.net.grpc_h2 import h2_core  # pylint: disable=g-import-not-at-top

    return h2_core.H2Core(limits, stream_window=STREAM_WINDOW)
  return connection_lib.H2Connection(limits, stream_window=STREAM_WINDOW)


class _Connection(asyncio.Protocol):
  """One client connection: bytes to the core, events to the calls."""

  def __init__(self, server: Server):
    self._server = server
    self.loop = server.loop
    self.peer = ""
    self._transport: asyncio.Transport | None = None
    self._core = _make_core(server.engine, server.limits)
    self._calls: calls_lib.GrpcCalls | None = None
    self._flush_handle: asyncio.Handle | None = None
    self._timers: dict[str, asyncio.TimerHandle] = {}
    self._ping_sent: bytes | None = None
    self._active = False  # events since the idle timer last looked
    self._awaiting_preface = True
    self._read_paused = False
    self._write_paused = False
    self._closing = False
    self.closed: asyncio.Future = self.loop.create_future()

  # asyncio.Protocol

  def connection_made(self, transport: asyncio.BaseTransport) -> None:
    self._transport = transport  # type: ignore[assignment]
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
      family = "ipv6" if ":" in str(peer[0]) else "ipv4"
      self.peer = f"{family}:{peer[0]}:{peer[1]}"
    else:
      self.peer = f"unix:{peer or ''}"
    server = self._server
    # The window granted up front beyond the protocol's 64 KiB is reserved
    # from the server's budget.
    window = min(CONNECTION_WINDOW, fr.DEFAULT_WINDOW + server.budget.room())
    self._core.initiate_connection(max(window, fr.DEFAULT_WINDOW))
    self._calls = calls_lib.GrpcCalls(
        self._core,
        server.registry,
        server.limits,
        server.budget,
        server.executor,
        self.loop,
        self._schedule_flush,
        self.peer,
    )
    server.connections.add(self)
    limits = server.limits
    if limits.handshake_timeout_ms is not None:
      self._timer("handshake", limits.handshake_timeout_ms, self._on_handshake)
    if limits.keepalive_time_ms is not None:
      self._timer("keepalive", limits.keepalive_time_ms, self._on_keepalive)
    if limits.max_connection_idle_ms is not None:
      self._timer("idle", limits.max_connection_idle_ms, self._on_idle)
    if limits.max_connection_age_ms is not None:
      self._timer("age", limits.max_connection_age_ms, self._on_age)
    if server.stopping:
      self.go_away()
    self._flush()

  def connection_lost(self, exc: Exception | None) -> None:
    self._transport = None
    for timer in self._timers.values():
      timer.cancel()
    self._timers.clear()
    if self._calls is not None:
      self._calls.close_all()
    self._server.connections.discard(self)
    if not self.closed.done():
      self.closed.set_result(None)

  def pause_writing(self) -> None:
    # The client is not reading its responses: stop taking requests.
    self._write_paused = True
    self._update_reading()

  def resume_writing(self) -> None:
    self._write_paused = False
    self._update_reading()

  def data_received(self, data: bytes) -> None:
    events = self._core.receive_data(data)
    if events:
      self._active = True
      # The call layer takes the call events and hands back the rest.
      for event in self._calls.handle(events):
        kind = type(event)
        if kind is ev.ProtocolFailure:
          logging.log_every_n_seconds(
              logging.WARNING,
              "gRPC connection from %s failed: %s (further such warnings "
              "are limited to one per %.0f s)",
              _WARN_EVERY_S,
              self.peer,
              event.message,
              _WARN_EVERY_S,
          )
          self._flush()
          self._close()
          return
        if kind is ev.PingAckReceived:
          if event.data == self._ping_sent:
            self._ping_sent = None
            self._cancel_timer("keepalive_timeout")
        elif kind is ev.ConnectionTerminated:
          self._core.going_away = True
          self._closing = True
    if self._awaiting_preface and self._core.preface_received:
      self._awaiting_preface = False
      self._cancel_timer("handshake")
    self._flush()

  def eof_received(self) -> bool | None:
    return None  # close our side too

  # Output.

  def _schedule_flush(self) -> None:
    if self._flush_handle is None:
      self._flush_handle = self.loop.call_soon(self._flush)

  def _flush(self) -> None:
    if self._flush_handle is not None:
      self._flush_handle.cancel()
      self._flush_handle = None
    out = self._core.data_to_send()
    calls = self._calls
    if calls is not None:
      calls.account_pending()
    if out and self._transport is not None:
      self._transport.write(out)
    self._update_reading()
    if (self._closing or self._core.going_away) and (
        calls is None or not calls.calls
    ):
      self._close()

  def _update_reading(self) -> None:
    transport = self._transport
    if transport is None or transport.is_closing():
      return
    calls = self._calls
    held = calls.held_bytes if calls is not None else 0
    budget = self._server.budget
    # Over its own budget, or holding bytes while the server is over its:
    # connections that hold nothing keep reading (their calls are small).
    over = held and (
        held > self._server.limits.max_connection_buffer_bytes
        or budget.used > budget.limit
    )
    pause = self._write_paused or over
    if over:  # retry once the budget frees
      self._server.budget.wait(id(self), self._schedule_flush)
    if pause != self._read_paused:
      self._read_paused = pause
      if pause:
        transport.pause_reading()
      else:
        transport.resume_reading()

  def _close(self) -> None:
    if self._transport is not None:
      out = self._core.data_to_send()
      if out:
        self._transport.write(out)
      self._transport.close()

  # Timers.

  def _timer(self, name: str, delay_ms: float, callback) -> None:
    self._cancel_timer(name)
    self._timers[name] = self.loop.call_later(delay_ms / 1000.0, callback)

  def _cancel_timer(self, name: str) -> None:
    timer = self._timers.pop(name, None)
    if timer is not None:
      timer.cancel()

  def _on_handshake(self) -> None:
    self._timers.pop("handshake", None)
    if not self._core.preface_received:
      self.abort()

  def _on_keepalive(self) -> None:
    limits = self._server.limits
    self._ping_sent = struct.pack(">d", time.monotonic())
    self._core.ping(self._ping_sent)
    self._flush()
    self._timer("keepalive_timeout", limits.keepalive_timeout_ms, self.abort)
    self._timer("keepalive", limits.keepalive_time_ms, self._on_keepalive)

  def _on_idle(self) -> None:
    """GOAWAY once a whole period passed with no call and no frame."""
    idle = (
        not self._active and self._calls is not None and not self._calls.calls
    )
    self._active = False
    if idle:
      self.go_away()
      return
    self._timer(
        "idle", self._server.limits.max_connection_idle_ms, self._on_idle
    )

  def _on_age(self) -> None:
    self.go_away()
    grace = self._server.limits.max_connection_age_grace_ms
    if grace is not None:
      self._timer("age_grace", grace, self.abort)

  # Called by Server.

  def go_away(self) -> None:
    """Takes no new calls; closes once the calls in flight are answered."""
    if self._closing:
      return
    self._closing = True
    self._core.close_connection(fr.NO_ERROR)
    self._flush()

  def abort(self) -> None:
    if self._transport is not None:
      self._transport.abort()


def ssl_server_context(
    cert_chain: str,
    private_key: str,
    root_certificates: str | None,
    require_client_auth: bool,
) -> ssl.SSLContext:
  """A TLS server context from PEM text, negotiating `h2` as gRPC needs."""
  return tls.server_context(
      cert_chain, private_key, root_certificates, require_client_auth, ["h2"]
  )


class Server:
  """A grpc.Server look-alike for unary calls, run on the current event loop.

  Bind addresses with `add_insecure_port` / `add_secure_port` (as grpc's,
  `host:port` or `unix:path`; they bind at once and return the port), then
  `start`; `stop(grace)` lets calls in flight finish. `limits` holds every
  bound (limits.py); the three size arguments are grpc's names for some.
  `engine` picks the HTTP/2 state machine: ours, or python-hyper h2's.
  """

  def __init__(
      self,
      executor: concurrent.futures.Executor | None = None,
      max_receive_message_length: int | None = None,
      max_concurrent_streams: int | None = None,
      max_metadata_size: int | None = None,
      limits: limits_lib.GrpcLimits | None = None,
      engine: str = "native",
  ):
    if engine not in ENGINES:
      raise ValueError(f"unknown HTTP/2 engine {engine!r}")
    self.loop = asyncio.get_running_loop()
    self.executor = executor
    arguments = {}
    for key, value in (
        ("grpc.max_receive_message_length", max_receive_message_length),
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        ("grpc.max_metadata_size", max_metadata_size),
    ):
      if value is not None:
        arguments[key] = value
    self.limits = limits_lib.from_channel_arguments(
        arguments, limits or limits_lib.GrpcLimits()
    )
    self.engine = engine
    self.budget = budget_lib.Budget(self.limits.max_server_buffer_bytes)
    self.registry = calls_lib.Registry()
    self.connections: set[_Connection] = set()
    self.stopping = False
    self._listeners: list[asyncio.AbstractServer] = []
    self._serving = False
    # Listeners on sockets bound elsewhere, by the socket's fd.
    self._adopted: dict[int, asyncio.AbstractServer] = {}

  # Registration, as grpc.Server.

  def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
    self.registry.add_generic_rpc_handlers(handlers)

  def add_registered_method_handlers(
      self, service: str, handlers: dict[str, Any]
  ) -> None:
    self.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service, handlers),)
    )

  # Listening.

  async def add_insecure_port(self, address: str) -> int:
    return await self._bind(address, None)

  async def add_secure_port(
      self, address: str, ssl_context: ssl.SSLContext
  ) -> int:
    return await self._bind(address, ssl_context)

  async def _bind(self, address: str, context: ssl.SSLContext | None) -> int:
    factory = lambda: _Connection(self)
    handshake = self.limits.handshake_timeout_ms
    tls = {}
    if context is not None:
      tls = {"ssl": context}
      if handshake is not None:
        tls["ssl_handshake_timeout"] = handshake / 1000.0
    if address.startswith("unix:"):
      path = address[len("unix:") :]
      try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
          os.unlink(path)  # a stale socket from an earlier run, as grpc does
      except FileNotFoundError:
        pass
      listener = await self.loop.create_unix_server(
          factory, path, backlog=LISTEN_BACKLOG, start_serving=False, **tls
      )
      self._listeners.append(listener)
      return 0
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or None
    if host in ("0.0.0.0", "::", "*"):
      host = host if host != "*" else None
    listener = await self.loop.create_server(
        factory,
        host,
        int(port),
        reuse_address=True,
        backlog=LISTEN_BACKLOG,
        start_serving=False,
        **tls,
    )
    self._listeners.append(listener)
    return listener.sockets[0].getsockname()[1]

  async def add_listening_socket(
      self, sock: socket.socket, ssl_context: ssl.SSLContext | None = None
  ) -> None:
    """Also accepts on `sock`, bound elsewhere (before or after start).

    model_servers/workers: worker processes share sockets their supervisor
    bound. Closing the listener closes `sock` (pass a dup to keep the fd).
    """
    factory = lambda: _Connection(self)
    tls = {}
    if ssl_context is not None:
      tls = {"ssl": ssl_context}
      handshake = self.limits.handshake_timeout_ms
      if handshake is not None:
        tls["ssl_handshake_timeout"] = handshake / 1000.0
    create = (
        self.loop.create_unix_server
        if sock.family == socket.AF_UNIX
        else self.loop.create_server
    )
    listener = await create(
        factory, sock=sock, start_serving=self._serving, **tls
    )
    self._listeners.append(listener)
    self._adopted[sock.fileno()] = listener

  def remove_listening_socket(self, sock: socket.socket) -> None:
    """Stops accepting on a socket of add_listening_socket; closes it."""
    listener = self._adopted.pop(sock.fileno(), None)
    if listener is not None:
      self._listeners.remove(listener)
      listener.close()

  async def start(self) -> None:
    self._serving = True
    for listener in self._listeners:
      await listener.start_serving()

  async def stop(self, grace: float | None) -> None:
    """Stops accepting; calls in flight get `grace` seconds, then are cut."""
    self.stopping = True
    for listener in self._listeners:
      listener.close()
    connections = list(self.connections)
    for connection in connections:
      connection.go_away()
    if connections and grace:
      await asyncio.wait([c.closed for c in connections], timeout=grace)
    for connection in list(self.connections):
      connection.abort()
