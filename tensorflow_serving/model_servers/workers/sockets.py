"""The listening sockets the workers share, bound and held by the supervisor.

For each TCP port the supervisor binds one SO_REUSEPORT socket per worker
slot, and every worker inherits all of them. The kernel spreads new
connections evenly over the slot sockets (by a hash of the connection), and
each worker accepts on its own slot's. Measured alternatives (docs/deployment.md):

- One socket all workers accept from: uvloop accepts every pending
  connection on each wakeup, so whichever worker wakes first takes a burst;
  with 64 connections from wrk, 65 / 0 and 42 / 23 in two runs.
- One SO_REUSEPORT socket per worker, bound by the worker: balanced, but a
  killed worker's socket dies with it, and the connections the kernel had
  just queued on it are reset. A gRPC client whose reconnect hit that
  window then fails every call for its whole reconnect back-off (thousands
  of calls in one run), not only the calls in flight.

Slot sockets outlive their workers: when one dies, the connections queued
for it wait a few milliseconds until the serving workers also accept on its
slot (supervisor.py), and its replacement takes the slot back once it
serves. A socket starts to listen when the first worker serves on it (so,
as from one server, connections are refused until a model is loaded), and
stops (shutdown) when no worker is left to serve or the server stops.

The sockets set SO_REUSEADDR, as a single server's do, so that the server
restarts at once on a port with connections in TIME_WAIT. The other side of
that: while none of them listens (before the first worker serves, or while
none serves), another program could bind the port, as it could before a
single server bound it.

A UNIX socket has no SO_REUSEPORT: there is one, and every serving worker
accepts on it.
"""

from __future__ import annotations

import errno
import os
import socket
import stat


def slot_sockets(
    port: int, count: int, dual_stack: bool
) -> list[socket.socket]:
  """`count` bound (not yet listening) sockets sharing `port`.

  gRPC listens on 0.0.0.0 as a single server does; REST on every interface:
  one IPv6 socket that also takes IPv4 (`dual_stack`), or IPv4 alone where
  the host has no IPv6. Raises OSError (EADDRINUSE) if anything else has
  the port, even another socket with SO_REUSEPORT (a second server).
  """
  candidates = [(socket.AF_INET, ("0.0.0.0", port))]
  if dual_stack and socket.has_ipv6:
    candidates.insert(0, (socket.AF_INET6, ("::", port)))
  for i, (family, address) in enumerate(candidates):
    try:
      _probe(family, address)
      break
    except OSError as exc:
      # In use is final; no IPv6 on this host falls back to IPv4.
      if exc.errno == errno.EADDRINUSE or i == len(candidates) - 1:
        raise
  sockets = []
  try:
    for _ in range(count):
      sock = socket.socket(family, socket.SOCK_STREAM)
      sockets.append(sock)
      _dual_stack(sock)
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
      sock.bind(address)
      sock.set_inheritable(True)
  except BaseException:
    for sock in sockets:
      sock.close()
    raise
  return sockets


def _probe(family: int, address: tuple[str, int]) -> None:
  """Binds and closes: fails if anything else holds the port."""
  with socket.socket(family, socket.SOCK_STREAM) as probe:
    _dual_stack(probe)
    # Only a listening socket, or one without SO_REUSEADDR, conflicts here.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    probe.bind(address)


def _dual_stack(sock: socket.socket) -> None:
  if sock.family == socket.AF_INET6:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)


def unix_socket(path: str) -> socket.socket:
  """A bound UNIX socket at `path` that the workers inherit."""
  try:
    if stat.S_ISSOCK(os.stat(path).st_mode):
      os.unlink(path)  # A stale socket from an earlier run, as grpc does.
  except FileNotFoundError:
    pass
  sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    sock.bind(path)
  except BaseException:
    sock.close()
    raise
  sock.set_inheritable(True)
  return sock


def stop_listening(sock: socket.socket) -> None:
  """New connections to a TCP socket are refused again (queued ones reset).

  On Linux, shutdown() turns a listening TCP socket back into a bound one,
  in every process holding it; listen() (a worker serving again) reopens it.
  (A UNIX socket would stay refusing: it is left as it is.)
  """
  if sock.family == socket.AF_UNIX:
    return
  try:
    sock.shutdown(socket.SHUT_RD)
  except OSError:
    pass  # Not listening (yet).
