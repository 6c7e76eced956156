"""The grpc_h2 server against independent clients: grpcio and grpc-js.

The checks any gRPC client relies on: deadline, cancel, gzip, 20 MB
messages both ways, 100 concurrent calls, on both HTTP/2 engines.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import subprocess
import threading
import time

from absl.testing import absltest
from absl.testing import parameterized
import grpc

from tensorflow_serving.test_util import binaries
from tensorflow_serving.util.net.grpc_h2 import server as grpc_h2_server

_IDENTITY = lambda data: data


class _Service:

  def __init__(self):
    self.cancelled = threading.Event()

  async def echo(self, request: bytes, context) -> bytes:
    del context  # Unused.
    return request

  async def slow(self, request: bytes, context) -> bytes:
    del context  # Unused.
    try:
      await asyncio.sleep(float(request))
    except asyncio.CancelledError:
      self.cancelled.set()
      raise
    return b"late"

  def handler(self):
    unary = lambda fn: grpc.unary_unary_rpc_method_handler(
        fn, _IDENTITY, _IDENTITY
    )
    return grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": unary(self.echo), "Slow": unary(self.slow)}
    )


class _Server:
  """A grpc_h2 server on an event loop thread of its own."""

  def __init__(self, engine: str):
    self.service = _Service()
    self.loop = asyncio.new_event_loop()
    ready = threading.Event()

    async def start():
      self.server = grpc_h2_server.Server(
          concurrent.futures.ThreadPoolExecutor(2), engine=engine
      )
      self.server.add_generic_rpc_handlers((self.service.handler(),))
      self.port = await self.server.add_insecure_port("127.0.0.1:0")
      await self.server.start()
      ready.set()

    self.thread = threading.Thread(
        target=lambda: (
            self.loop.run_until_complete(start()),
            self.loop.run_forever(),
        ),
        daemon=True,
    )
    self.thread.start()
    ready.wait(10)

  def close(self) -> None:
    asyncio.run_coroutine_threadsafe(self.server.stop(1), self.loop).result(10)
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(10)


class InteropTest(parameterized.TestCase):

  def start(self, engine: str) -> _Server:
    server = _Server(engine)
    self.addCleanup(server.close)
    return server

  @parameterized.parameters("native", "h2")
  def test_grpcio(self, engine):
    server = self.start(engine)
    options = [
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
    ]
    target = f"127.0.0.1:{server.port}"
    with grpc.insecure_channel(target, options) as channel:
      echo = channel.unary_unary("/test.Echo/Echo", _IDENTITY, _IDENTITY)
      slow = channel.unary_unary("/test.Echo/Slow", _IDENTITY, _IDENTITY)
      big = os.urandom(20 << 20)
      self.assertEqual(echo(big, timeout=60), big)
      futures = [echo.future(b"%d" % i, timeout=30) for i in range(100)]
      self.assertEqual(
          [f.result() for f in futures], [b"%d" % i for i in range(100)]
      )
      with self.assertRaises(grpc.RpcError) as cm:
        slow(b"5", timeout=0.3)
      self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
      future = slow.future(b"5", timeout=10)
      time.sleep(0.2)
      future.cancel()
      self.assertTrue(server.service.cancelled.wait(5))
    with grpc.insecure_channel(
        target, options, compression=grpc.Compression.Gzip
    ) as channel:
      echo = channel.unary_unary("/test.Echo/Echo", _IDENTITY, _IDENTITY)
      self.assertEqual(echo(b"z" * 100000, timeout=30), b"z" * 100000)

  @parameterized.parameters("native", "h2")
  def test_grpc_js(self, engine):
    node = shutil.which("node") or "/usr/bin/node"
    modules = os.path.join(
        binaries.repo_root(), "tools", "node", "node_modules"
    )
    self.assertTrue(
        os.path.isdir(os.path.join(modules, "@grpc", "grpc-js")),
        "tools/setup.sh installs tools/node (npm ci)",
    )
    server = self.start(engine)
    script = os.path.join(os.path.dirname(__file__), "interop_grpc_js.js")
    result = subprocess.run(
        [node, script, f"127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": modules},
        check=False,
    )
    checks = {}
    for line in result.stdout.splitlines():
      doc = json.loads(line)
      checks[doc["check"]] = doc
    self.assertEqual(
        sorted(checks),
        sorted(
            ["echo", "20MB", "gzip", "deadline", "cancel", "100 concurrent"]
        ),
        result.stdout + result.stderr,
    )
    for name, doc in checks.items():
      self.assertTrue(doc["ok"], f"{name}: {doc['detail']}")
    self.assertTrue(server.service.cancelled.wait(5))


if __name__ == "__main__":
  absltest.main()
