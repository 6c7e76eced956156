"""The listening addresses the workers share, held by the supervisor.

TCP: every worker binds its own socket with SO_REUSEPORT and the kernel
spreads new connections evenly across the workers that listen (an inherited
socket that all of them accept from does not: uvloop accepts every pending
connection on each wakeup, so the first worker to wake takes most of a
burst). A worker that is still loading, or restarting, is simply not
listening, so no connection waits for it.

Before any worker starts, the supervisor checks that the port is free (a
single server would fail to bind it) and then holds it with a bound,
non-listening SO_REUSEPORT socket for as long as it runs: no other program
can take the port while workers restart, and a socket that does not listen
is never handed a connection.

A UNIX socket has no SO_REUSEPORT: the supervisor binds and listens once, and
each worker accepts from the descriptor it inherits.
"""

from __future__ import annotations

import os
import socket
import stat


def reserve_tcp(port: int, host: str | None) -> list[socket.socket]:
  """Holds `port` on `host` (None: every interface, as the REST server).

  Raises OSError (EADDRINUSE) when anything else has the port, including a
  socket that also set SO_REUSEPORT (another server started the same way).
  """
  infos = socket.getaddrinfo(
      host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
  )
  held = []
  try:
    for family, kind, proto, _, address in dict.fromkeys(infos):
      try:
        probe = socket.socket(family, kind, proto)
      except OSError:
        continue  # No such family on this host: the servers skip it too.
      with probe:
        _v6only(probe)
        # Only a listening socket or one without SO_REUSEADDR conflicts.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
      hold = socket.socket(family, kind, proto)
      held.append(hold)
      _v6only(hold)
      hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
      hold.bind(address)
  except BaseException:
    for s in held:
      s.close()
    raise
  return held


def _v6only(sock: socket.socket) -> None:
  # As asyncio binds each family's wildcard separately.
  if sock.family == socket.AF_INET6:
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)


def unix_listener(path: str) -> socket.socket:
  """A listening UNIX socket at `path` that worker processes inherit."""
  try:
    if stat.S_ISSOCK(os.stat(path).st_mode):
      os.unlink(path)  # A stale socket from an earlier run, as grpc does.
  except FileNotFoundError:
    pass
  sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    sock.bind(path)
    sock.listen(socket.SOMAXCONN)
  except BaseException:
    sock.close()
    raise
  sock.set_inheritable(True)
  return sock
