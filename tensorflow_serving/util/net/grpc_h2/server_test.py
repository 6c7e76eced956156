"""grpc_h2.Server against grpcio's own client: what any gRPC client relies on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from unittest import mock

from absl.testing import absltest
import grpc
import hpack

from tensorflow_serving.util.net.grpc_h2 import connection
from tensorflow_serving.util.net.grpc_h2 import frames as fr
from tensorflow_serving.util.net.grpc_h2 import limits as grpc_limits
from tensorflow_serving.util.net.grpc_h2 import server as grpc_h2_server

SERVICE = "test.Echo"
_IDENTITY = lambda data: data


class _Handlers:
  """Methods over raw bytes, so the test needs no generated protos."""

  def __init__(self):
    self.cancelled = threading.Event()
    self.release = asyncio.Event()
    self.last_metadata: tuple = ()

  async def echo(self, request: bytes, context) -> bytes:
    self.last_metadata = context.invocation_metadata()
    context.set_trailing_metadata((("x-trailer", "t"),))
    return request[::-1]

  def echo_sync(self, request: bytes, context) -> bytes:
    assert threading.current_thread() is not threading.main_thread()
    return b"sync:" + request

  async def grow(self, request: bytes, context) -> bytes:
    return request * 4

  async def fail(self, request: bytes, context) -> bytes:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, request.decode("utf-8")
    )

  def fail_sync(self, request: bytes, context) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

  async def crash(self, request: bytes, context) -> bytes:
    raise ValueError("boom")

  async def slow(self, request: bytes, context) -> bytes:
    try:
      await asyncio.sleep(float(request.decode()))
    except asyncio.CancelledError:
      self.cancelled.set()
      raise
    return b"late"

  async def set_code(self, request: bytes, context) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    context.set_details("not now")
    return b"ignored"

  async def chat(self, requests, context):
    """Bidirectional: one answer per request, as reflection answers."""
    async for request in requests:
      if request == b"fail":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to")
      yield request[::-1]

  async def count(self, request: bytes, context):
    """Server streaming: `request` answers of 64 KiB each."""
    for i in range(int(request.decode())):
      yield b"%08d" % i + b"." * ((64 << 10) - 8)

  async def total(self, requests, context) -> bytes:
    """Client streaming: the sizes of every request, summed."""
    size = 0
    async for request in requests:
      size += len(request)
    return b"%d" % size

  def chat_sync(self, requests, context):
    yield from requests

  def generic_handler(self):
    unary = lambda fn: grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=_IDENTITY, response_serializer=_IDENTITY
    )
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": unary(self.echo),
            "EchoSync": unary(self.echo_sync),
            "Grow": unary(self.grow),
            "Fail": unary(self.fail),
            "FailSync": unary(self.fail_sync),
            "Crash": unary(self.crash),
            "Slow": unary(self.slow),
            "SetCode": unary(self.set_code),
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat, _IDENTITY, _IDENTITY
            ),
            "Count": grpc.unary_stream_rpc_method_handler(
                self.count, _IDENTITY, _IDENTITY
            ),
            "Total": grpc.stream_unary_rpc_method_handler(
                self.total, _IDENTITY, _IDENTITY
            ),
            "ChatSync": grpc.stream_stream_rpc_method_handler(
                self.chat_sync, _IDENTITY, _IDENTITY
            ),
        },
    )


class _ServerThread:
  """A grpc_h2 server on its own event loop thread."""

  def __init__(
      self,
      handlers: _Handlers,
      addresses=("127.0.0.1:0",),
      ssl_context=None,
      **options,
  ):
    self.loop = asyncio.new_event_loop()
    self.executor = concurrent.futures.ThreadPoolExecutor(4)
    self.ports: list[int] = []
    ready = threading.Event()

    async def start():
      self.server = grpc_h2_server.Server(self.executor, **options)
      self.server.add_generic_rpc_handlers((handlers.generic_handler(),))
      for address in addresses:
        if ssl_context is None:
          self.ports.append(await self.server.add_insecure_port(address))
        else:
          self.ports.append(
              await self.server.add_secure_port(address, ssl_context)
          )
      await self.server.start()

    def main():
      asyncio.set_event_loop(self.loop)
      self.loop.run_until_complete(start())
      ready.set()
      self.loop.run_forever()

    self.thread = threading.Thread(target=main, daemon=True)
    self.thread.start()
    ready.wait(10)

  @property
  def target(self) -> str:
    return f"127.0.0.1:{self.ports[0]}"

  def call_soon(self, fn, *args):
    self.loop.call_soon_threadsafe(fn, *args)

  def stop(self, grace: float) -> concurrent.futures.Future:
    return asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)

  def close(self) -> None:
    self.stop(0).result(10)
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(10)
    self.executor.shutdown()


def _method(channel: grpc.Channel, name: str):
  return channel.unary_unary(
      f"/{SERVICE}/{name}",
      request_serializer=_IDENTITY,
      response_deserializer=_IDENTITY,
  )


class GrpcH2ServerTest(absltest.TestCase):

  engine = "native"

  def setUp(self):
    super().setUp()
    self.handlers = _Handlers()
    self.server = _ServerThread(self.handlers, engine=self.engine)
    self.addCleanup(self.server.close)
    self.channel = grpc.insecure_channel(self.server.target)
    self.addCleanup(self.channel.close)

  def call(self, name: str, request: bytes, **kwargs):
    return _method(self.channel, name)(request, timeout=30, **kwargs)

  def assertStatus(self, code: grpc.StatusCode, fn, details: str | None = None):
    with self.assertRaises(grpc.RpcError) as cm:
      fn()
    self.assertEqual(cm.exception.code(), code, cm.exception.details())
    if details is not None:
      self.assertEqual(cm.exception.details(), details)
    return cm.exception

  def test_async_and_sync_handlers(self):
    self.assertEqual(self.call("Echo", b"abc"), b"cba")
    self.assertEqual(self.call("EchoSync", b"abc"), b"sync:abc")
    self.assertEqual(self.call("Echo", b""), b"")

  def test_metadata_both_ways(self):
    response, call = _method(self.channel, "Echo").with_call(
        b"x",
        timeout=30,
        metadata=(("x-key", "value"), ("x-blob-bin", b"\x00\xff\x01")),
    )
    self.assertEqual(response, b"x")
    self.assertIn(("x-trailer", "t"), call.trailing_metadata())
    received = dict(self.handlers.last_metadata)
    self.assertEqual(received["x-key"], "value")
    self.assertEqual(received["x-blob-bin"], b"\x00\xff\x01")
    self.assertNotIn(":path", received)

  def test_messages_larger_than_every_window(self):
    # 12 MiB in and 48 MiB out: past the 64 KiB default stream window the
    # client starts with, our 4 MiB stream and 16 MiB connection windows.
    request = os.urandom(12 << 20)
    options = [("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(self.server.target, options) as channel:
      response = _method(channel, "Grow")(request, timeout=60)
    self.assertEqual(response, request * 4)

  def test_many_concurrent_calls_get_their_own_answers(self):
    method = _method(self.channel, "Echo")
    futures = [method.future(b"%d" % i, timeout=30) for i in range(300)]
    for i, future in enumerate(futures):
      self.assertEqual(future.result(), (b"%d" % i)[::-1])

  def test_unknown_method_is_unimplemented(self):
    self.assertStatus(
        grpc.StatusCode.UNIMPLEMENTED,
        lambda: _method(self.channel, "Nope")(b"", timeout=30),
    )
    self.assertStatus(
        grpc.StatusCode.UNIMPLEMENTED,
        lambda: _method(grpc.insecure_channel(self.server.target), "../x")(
            b"", timeout=30
        ),
    )

  def _stream(self, name: str, channel=None):
    return (channel or self.channel).stream_stream(
        f"/{SERVICE}/{name}",
        request_serializer=_IDENTITY,
        response_deserializer=_IDENTITY,
    )

  def test_bidirectional_stream_answers_each_request_as_it_comes(self):
    # Each request is sent only after the previous answer arrived, as
    # grpcurl's reflection client does: the handler must run before the
    # client half-closes.
    sent = []
    answered = threading.Event()

    def requests():
      for word in (b"abc", b"", b"x" * (1 << 20)):
        sent.append(word)
        yield word
        self.assertTrue(answered.wait(10))
        answered.clear()

    answers = []
    for answer in self._stream("Chat")(requests(), timeout=30):
      answers.append(answer)
      answered.set()
    self.assertEqual(answers, [w[::-1] for w in sent])

  def test_server_streaming_waits_for_a_slow_reader(self):
    # 8 MiB of answers through the client's 64 KiB initial window.
    call = self.channel.unary_stream(
        f"/{SERVICE}/Count",
        request_serializer=_IDENTITY,
        response_deserializer=_IDENTITY,
    )
    answers = list(call(b"128", timeout=60))
    self.assertLen(answers, 128)
    self.assertEqual(
        [a[:8] for a in answers], [b"%08d" % i for i in range(128)]
    )

  def test_client_streaming(self):
    call = self.channel.stream_unary(
        f"/{SERVICE}/Total",
        request_serializer=_IDENTITY,
        response_deserializer=_IDENTITY,
    )
    chunks = [os.urandom(3 << 20) for _ in range(5)]  # past every window
    self.assertEqual(call(iter(chunks), timeout=60), b"%d" % (15 << 20))
    self.assertEqual(call(iter([]), timeout=30), b"0")

  def test_stream_abort_after_answers_sends_the_status_as_trailers(self):
    responses = self._stream("Chat")(iter([b"ab", b"fail"]), timeout=30)
    self.assertEqual(next(responses), b"ba")
    with self.assertRaises(grpc.RpcError) as cm:
      next(responses)
    self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
    self.assertEqual(cm.exception.details(), "asked to")
    self.assertEqual(self.call("Echo", b"ok"), b"ko")  # the connection lives

  def test_sync_streaming_handler_is_unimplemented(self):
    # A thread per open stream is what streaming must never cost.
    self.assertStatus(
        grpc.StatusCode.UNIMPLEMENTED,
        lambda: list(self._stream("ChatSync")(iter([b"x"]), timeout=30)),
    )

  def test_streaming_message_past_its_limit(self):
    limit = grpc_limits.GrpcLimits().max_stream_message_bytes
    answered = threading.Event()

    def requests():
      yield b"a"
      answered.wait(10)
      yield b"x" * (limit + 1)

    responses = self._stream("Chat")(requests(), timeout=30)
    self.assertEqual(next(responses), b"a")
    answered.set()
    with self.assertRaises(grpc.RpcError) as cm:
      next(responses)
    self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

  def test_idle_stream_ends_unavailable(self):
    server = _ServerThread(
        self.handlers,
        engine=self.engine,
        limits=grpc_limits.GrpcLimits(max_stream_idle_ms=300),
    )
    self.addCleanup(server.close)
    never = threading.Event()
    self.addCleanup(never.set)

    def requests():
      yield b"hi"
      never.wait(30)  # then silence

    with grpc.insecure_channel(server.target) as channel:
      responses = self._stream("Chat", channel)(requests(), timeout=30)
      self.assertEqual(next(responses), b"ih")
      start = time.monotonic()
      with self.assertRaises(grpc.RpcError) as cm:
        next(responses)
      self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
      self.assertLess(time.monotonic() - start, 10)

  def test_abort_status_and_unicode_details(self):
    self.assertStatus(
        grpc.StatusCode.INVALID_ARGUMENT,
        lambda: self.call("Fail", "bad 100% – ünïcode".encode()),
        "bad 100% – ünïcode",
    )
    self.assertStatus(
        grpc.StatusCode.NOT_FOUND,
        lambda: self.call("FailSync", b""),
        "no such thing",
    )
    self.assertStatus(
        grpc.StatusCode.FAILED_PRECONDITION,
        lambda: self.call("SetCode", b""),
        "not now",
    )

  def test_handler_exception_is_unknown_and_server_goes_on(self):
    error = self.assertStatus(
        grpc.StatusCode.UNKNOWN, lambda: self.call("Crash", b"")
    )
    self.assertIn("boom", error.details())
    self.assertEqual(self.call("Echo", b"ok"), b"ko")

  def test_undeserializable_request_is_internal(self):
    def bad(data):
      raise ValueError("cannot parse")

    handler = grpc.method_handlers_generic_handler(
        "test.Bad",
        {
            "Parse": grpc.unary_unary_rpc_method_handler(
                self.handlers.echo,
                request_deserializer=bad,
                response_serializer=_IDENTITY,
            )
        },
    )
    self.server.call_soon(
        self.server.server.add_generic_rpc_handlers, (handler,)
    )
    time.sleep(0.1)
    method = self.channel.unary_unary(
        "/test.Bad/Parse",
        request_serializer=_IDENTITY,
        response_deserializer=_IDENTITY,
    )
    self.assertStatus(
        grpc.StatusCode.INTERNAL,
        lambda: method(b"x", timeout=30),
        "Exception deserializing request!",
    )

  def test_deadline_cancels_the_handler(self):
    started = time.monotonic()
    self.assertStatus(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        lambda: _method(self.channel, "Slow")(b"5", timeout=0.3),
    )
    self.assertLess(time.monotonic() - started, 3)
    self.assertTrue(self.handlers.cancelled.wait(5))
    self.assertEqual(self.call("Echo", b"ok"), b"ko")

  def test_client_cancel_cancels_the_handler(self):
    future = _method(self.channel, "Slow").future(b"5", timeout=30)
    time.sleep(0.3)
    future.cancel()
    self.assertTrue(self.handlers.cancelled.wait(5))
    self.assertEqual(self.call("Echo", b"ok"), b"ko")

  def test_gzip_and_deflate_requests(self):
    for compression in (grpc.Compression.Gzip, grpc.Compression.Deflate):
      with grpc.insecure_channel(
          self.server.target, compression=compression
      ) as channel:
        self.assertEqual(
            _method(channel, "Echo")(b"z" * 5000, timeout=30), b"z" * 5000
        )

  def test_oversized_metadata_fails_only_its_call(self):
    self.assertStatus(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        lambda: self.call("Echo", b"x", metadata=(("x-big", "a" * 20000),)),
    )
    self.assertEqual(self.call("Echo", b"ok"), b"ko")

  def test_not_http2_closes_only_that_connection(self):
    with socket.create_connection(("127.0.0.1", self.server.ports[0])) as s:
      s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      s.settimeout(5)
      data = s.recv(4096)
      while data and s.recv(4096):
        pass
    self.assertEqual(self.call("Echo", b"ok"), b"ko")

  def test_graceful_stop_finishes_calls_in_flight(self):
    future = _method(self.channel, "Slow").future(b"0.5", timeout=30)
    time.sleep(0.2)
    stopped = self.server.stop(10)
    self.assertEqual(future.result(), b"late")
    stopped.result(10)
    with grpc.insecure_channel(self.server.target) as channel:
      self.assertStatus(
          grpc.StatusCode.UNAVAILABLE,
          lambda: _method(channel, "Echo")(b"x", timeout=2),
      )


class H2EngineServerTest(GrpcH2ServerTest):
  """The same calls over python-hyper h2's state machine (h2_core.py)."""

  engine = "h2"


class TransportOptionsTest(absltest.TestCase):

  def test_max_receive_message_length(self):
    server = _ServerThread(_Handlers(), max_receive_message_length=1000)
    self.addCleanup(server.close)
    with grpc.insecure_channel(server.target) as channel:
      echo = _method(channel, "Echo")
      self.assertEqual(echo(b"a" * 1000, timeout=30), b"a" * 1000)
      with self.assertRaises(grpc.RpcError) as cm:
        echo(b"a" * 1001, timeout=30)
      self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
      self.assertEqual(echo(b"b", timeout=30), b"b")

  def _raw_connection(self, server: _ServerThread) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.ports[0]), 5)
    self.addCleanup(sock.close)
    sock.sendall(fr.PREFACE + fr.settings({}))
    return sock

  def _frames_until_closed(self, sock: socket.socket, timeout_s: float):
    """(type, payload) of every frame until EOF; None if still open."""
    sock.settimeout(timeout_s)
    data = b""
    try:
      while chunk := sock.recv(65536):
        data += chunk
    except TimeoutError:
      return None
    except ConnectionResetError:
      pass
    out, pos = [], 0
    while pos + 9 <= len(data):
      high, low, kind, _, _ = fr.HEADER.unpack_from(data, pos)
      length = high << 16 | low
      out.append((kind, data[pos + 9 : pos + 9 + length]))
      pos += 9 + length
    return out

  def test_idle_connection_gets_goaway_and_clients_reconnect(self):
    limits = grpc_limits.GrpcLimits(max_connection_idle_ms=300)
    server = _ServerThread(_Handlers(), limits=limits)
    self.addCleanup(server.close)
    frames = self._frames_until_closed(self._raw_connection(server), 5)
    self.assertIsNotNone(frames)
    goaways = [p for kind, p in frames if kind == fr.GOAWAY]
    self.assertEqual(fr.U32.unpack_from(goaways[-1], 4)[0], fr.NO_ERROR)
    with grpc.insecure_channel(server.target) as channel:
      echo = _method(channel, "Echo")
      self.assertEqual(echo(b"a", timeout=10), b"a")
      time.sleep(0.8)  # the connection went idle and away meanwhile
      self.assertEqual(echo(b"b", timeout=10), b"b")

  def test_max_connection_age_and_grace(self):
    limits = grpc_limits.GrpcLimits(
        max_connection_age_ms=200, max_connection_age_grace_ms=300
    )
    server = _ServerThread(_Handlers(), limits=limits)
    self.addCleanup(server.close)
    sock = self._raw_connection(server)
    # A call that never ends keeps the connection past its age: the grace
    # period then closes it.
    sock.sendall(
        fr.header_frames(
            1, fr.request_header_block(f"/{SERVICE}/Echo", "x"), False, 16384
        )
    )
    started = time.monotonic()
    frames = self._frames_until_closed(sock, 5)
    self.assertIsNotNone(frames)
    self.assertIn(fr.GOAWAY, [kind for kind, _ in frames])
    self.assertLess(time.monotonic() - started, 3)

  def test_keepalive_closes_a_peer_that_does_not_answer(self):
    limits = grpc_limits.GrpcLimits(
        keepalive_time_ms=200, keepalive_timeout_ms=200
    )
    server = _ServerThread(_Handlers(), limits=limits)
    self.addCleanup(server.close)
    frames = self._frames_until_closed(self._raw_connection(server), 5)
    self.assertIsNotNone(frames, "a silent peer must be closed")
    self.assertIn(fr.PING, [kind for kind, _ in frames])
    # grpcio answers the pings: its calls go on across several periods.
    with grpc.insecure_channel(server.target) as channel:
      echo = _method(channel, "Echo")
      for _ in range(4):
        self.assertEqual(echo(b"k", timeout=10), b"k")
        time.sleep(0.25)

  def test_preface_timeout(self):
    limits = grpc_limits.GrpcLimits(handshake_timeout_ms=300)
    server = _ServerThread(_Handlers(), limits=limits)
    self.addCleanup(server.close)
    sock = socket.create_connection(("127.0.0.1", server.ports[0]), 5)
    self.addCleanup(sock.close)
    self.assertIsNotNone(self._frames_until_closed(sock, 5))

  def test_unix_socket(self):
    path = os.path.join(tempfile.mkdtemp(), "grpc.sock")
    server = _ServerThread(_Handlers(), addresses=(f"unix:{path}",))
    self.addCleanup(server.close)
    with grpc.insecure_channel(f"unix:{path}") as channel:
      self.assertEqual(_method(channel, "Echo")(b"ab", timeout=30), b"ba")

  def test_tls_and_mutual_tls(self):
    openssl = shutil.which("openssl")
    self.assertIsNotNone(openssl, "tools/setup.sh installs openssl")
    work = tempfile.mkdtemp()

    def make_cert(name: str, cn: str) -> tuple[str, str]:
      key, cert = (os.path.join(work, name + ext) for ext in (".key", ".pem"))
      subprocess.run(
          [
              openssl,
              "req",
              "-x509",
              "-newkey",
              "rsa:2048",
              "-nodes",
              "-days",
              "2",
              "-subj",
              f"/CN={cn}",
              "-addext",
              f"subjectAltName=DNS:{cn}",
              "-keyout",
              key,
              "-out",
              cert,
          ],
          check=True,
          capture_output=True,
      )
      return open(key).read(), open(cert).read()

    server_key, server_cert = make_cert("server", "localhost")
    client_key, client_cert = make_cert("client", "client")
    context = grpc_h2_server.ssl_server_context(
        server_cert,
        server_key,
        root_certificates=client_cert,
        require_client_auth=True,
    )
    server = _ServerThread(_Handlers(), ssl_context=context)
    self.addCleanup(server.close)
    target = f"localhost:{server.ports[0]}"
    with grpc.secure_channel(
        target,
        grpc.ssl_channel_credentials(
            server_cert.encode(), client_key.encode(), client_cert.encode()
        ),
    ) as channel:
      self.assertEqual(_method(channel, "Echo")(b"tls", timeout=30), b"slt")
    # Without a client certificate, mutual TLS refuses the call.
    with grpc.secure_channel(
        target, grpc.ssl_channel_credentials(server_cert.encode())
    ) as channel:
      with self.assertRaises(grpc.RpcError) as cm:
        _method(channel, "Echo")(b"tls", timeout=10)
      self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)


class SharedConnectionTest(absltest.TestCase):
  """Two grpcio channels on one connection, as the model server's tests.

  grpcio shares a connection (and so one HPACK table) between channels with
  equal arguments: a burst of calls whose deadlines expire client-side on
  one, a steady stream on the other. No call may reach a method other than
  the one it named, and every header block the native core decodes (reused
  or not) must equal what a fresh hpack.Decoder decodes from its bytes.
  """

  def test_interleaved_channels_decode_as_hpack_does(self):
    decoded = []  # (block, headers) in the order the server decoded them
    real = connection.H2Connection._decode_headers  # pylint: disable=protected-access

    def recording(core, block):
      result = real(core, block)
      decoded.append((block, list(result[0])))
      return result

    patcher = mock.patch.object(
        connection.H2Connection, "_decode_headers", recording
    )
    patcher.start()
    self.addCleanup(patcher.stop)
    cores = []
    real_init = connection.H2Connection.__init__

    def counting(core, *args, **kwargs):
      cores.append(core)
      real_init(core, *args, **kwargs)

    init_patcher = mock.patch.object(
        connection.H2Connection, "__init__", counting
    )
    init_patcher.start()
    self.addCleanup(init_patcher.stop)
    server = _ServerThread(_Handlers())
    self.addCleanup(server.close)
    codes: list[grpc.StatusCode] = []
    stop = threading.Event()

    def probe():
      with grpc.insecure_channel(server.target) as channel:
        echo = _method(channel, "Echo")
        while not stop.is_set():
          try:
            echo(b"p", timeout=10)
          except grpc.RpcError as exc:
            codes.append(exc.code())

    prober = threading.Thread(target=probe)
    prober.start()
    try:
      with grpc.insecure_channel(server.target) as channel:
        slow = _method(channel, "Slow")
        for _ in range(3):
          calls = [
              slow.future(b"0.3", timeout=0.1 if i < 40 else None)
              for i in range(50)
          ]
          for call in calls:
            try:
              call.result(timeout=30)
            except grpc.RpcError as exc:
              codes.append(exc.code())
          for timeout in (10, 5, None):
            self.assertEqual(slow(b"0", timeout=timeout), b"late")
    finally:
      stop.set()
      prober.join(30)
    self.assertNotIn(grpc.StatusCode.UNIMPLEMENTED, codes)
    self.assertIn(grpc.StatusCode.DEADLINE_EXCEEDED, codes)
    self.assertLen(cores, 1)  # the channels shared the connection
    reference = hpack.Decoder(max_header_list_size=1 << 20)
    self.assertGreater(len(decoded), 150)
    for block, headers in decoded:
      self.assertEqual(headers, list(reference.decode(block, raw=True)))
      path = dict(headers).get(b":path", b"/")
      self.assertTrue(path.startswith(b"/"), path)


if __name__ == "__main__":
  absltest.main()
