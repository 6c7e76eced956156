"""The project's own light Python clients: raw HTTP/2 gRPC, HTTP/1.1, aiohttp.

Extras beside the clients users measure with (grpcio, h2load, wrk): they
cost the shared host little CPU, so they show what the server does when the
generator is nearly free. Each runs its streams on the closed loop.
"""

from __future__ import annotations

import asyncio

from tensorflow_serving.tools.benchmark import closed_loop
from tensorflow_serving.tools.benchmark import h2_grpc_client
from tensorflow_serving.tools.benchmark import http1_client
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import workload as workload_lib


async def run_grpc_raw(
    config: load_config.LoadConfig,
    workload: workload_lib.Workload,
    window: closed_loop.Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  host, port = split_host_port(config.server)
  checker = workload_lib.Checker(config, workload)
  messages = [workload_lib.grpc_frame(body) for body in workload.bodies]
  channels = [
      h2_grpc_client.GrpcChannel(
          host, port, load_config.PREDICT_METHOD, config.timeout_s
      )
      for _ in range(max(1, min(config.grpc_channels, streams)))
  ]

  def sender(channel: h2_grpc_client.GrpcChannel) -> closed_loop.Send:
    async def send(index: int) -> workload_lib.ErrorKind:
      try:
        raw = await channel.unary(messages[index])
      except h2_grpc_client.GrpcError as exc:
        return exc.status
      except OSError as exc:
        return type(exc).__name__
      return checker.grpc(index, raw)

    return send

  try:
    for channel in channels:
      await asyncio.wait_for(channel.connect(), config.timeout_s)
    await closed_loop.drive(
        [sender(channels[k % len(channels)]) for k in range(streams)],
        window,
        config.warmup_s,
        len(messages),
        offset,
        stride,
    )
  finally:
    for channel in channels:
      channel.close()


def split_host_port(server: str) -> tuple[str, int]:
  host, _, port = server.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"--server must be host:port, got {server!r}")
  return host.strip("[]"), int(port)


async def run_rest_raw(
    config: load_config.LoadConfig,
    workload: workload_lib.Workload,
    window: closed_loop.Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  host, port = split_host_port(config.server)
  checker = workload_lib.Checker(config, workload)
  head = (
      f"POST {config.rest_path} HTTP/1.1\r\nHost: {config.server}\r\n"
      "Content-Type: application/json\r\nContent-Length: "
  )
  payloads = [
      f"{head}{len(body)}\r\n\r\n".encode() + body for body in workload.bodies
  ]
  connections = [
      http1_client.HttpConnection(host, port, config.timeout_s)
      for _ in range(streams)
  ]
  for connection in connections:
    await connection.connect()

  def sender(connection: http1_client.HttpConnection) -> closed_loop.Send:
    async def send(index: int) -> workload_lib.ErrorKind:
      try:
        status, body = await connection.request(payloads[index])
      except (OSError, TimeoutError) as exc:
        return type(exc).__name__
      except Exception as exc:  # pylint: disable=broad-except
        return type(exc).__name__  # httptools parse errors
      if status != 200:
        return f"HTTP {status}"
      return checker.rest(index, body)

    return send

  try:
    await closed_loop.drive(
        [sender(c) for c in connections],
        window,
        config.warmup_s,
        len(payloads),
        offset,
        stride,
    )
  finally:
    for connection in connections:
      connection.close()


async def run_rest_aiohttp(
    config: load_config.LoadConfig,
    workload: workload_lib.Workload,
    window: closed_loop.Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  import aiohttp  # pylint: disable=g-import-not-at-top

  checker = workload_lib.Checker(config, workload)
  url = f"http://{config.server}{config.rest_path}"
  headers = {"Content-Type": "application/json"}
  bodies = workload.bodies
  connector = aiohttp.TCPConnector(limit=streams, force_close=False)
  async with aiohttp.ClientSession(
      connector=connector, timeout=aiohttp.ClientTimeout(total=config.timeout_s)
  ) as session:

    async def send(index: int) -> workload_lib.ErrorKind:
      try:
        async with session.post(
            url, data=bodies[index], headers=headers
        ) as response:
          body = await response.read()
          status = response.status
      except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__
      if status != 200:
        return f"HTTP {status}"
      return checker.rest(index, body)

    await closed_loop.drive(
        [send] * streams, window, config.warmup_s, len(bodies), offset, stride
    )
