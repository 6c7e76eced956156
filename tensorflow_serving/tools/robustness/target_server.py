r"""Both transports with trivial handlers, for the attack suite to aim at.

No TensorFlow: the process starts in a second and its memory is the
transports' own, so what an attack adds to it shows. gRPC serves
`/test.Echo/Echo` (raw bytes back) and REST echoes `POST /v1/echo` bodies
as `{"size": N}`; both run the production engines with the production
defaults unless a flag (same names as tensorflow_model_server's) says
otherwise.

  python -m tensorflow_serving.tools.robustness.target_server \
      --port=8500 --rest_api_port=8501
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import sys

from absl import app
from absl import flags
from absl import logging
import grpc

from tensorflow_serving.util.net.grpc_h2 import limits as grpc_limits
from tensorflow_serving.util.net.grpc_h2 import server as grpc_h2_server
from tensorflow_serving.util.net.http1 import server as http1_server

flags.DEFINE_integer("port", 8500, "gRPC port.")
flags.DEFINE_integer("rest_api_port", 8501, "REST port.")
flags.DEFINE_string(
    "grpc_channel_arguments", "", "k=v,... as tensorflow_model_server's."
)
flags.DEFINE_enum("grpc_http2_engine", "native", ["native", "h2"], "Engine.")
flags.DEFINE_integer("rest_api_timeout_in_ms", 30000, "REST deadline.")
flags.DEFINE_integer("rest_api_max_url_bytes", 16 << 10, "414 past it.")
flags.DEFINE_integer("rest_api_max_header_bytes", 64 << 10, "431 past it.")
flags.DEFINE_integer("rest_api_max_body_bytes", (1 << 31) - 1, "413 past it.")
flags.DEFINE_integer("rest_api_max_buffer_bytes", 4 << 30, "REST budget.")
flags.DEFINE_integer("rest_api_header_timeout_ms", 60000, "408 past it.")
flags.DEFINE_integer("rest_api_body_timeout_ms", 60000, "408 past it.")
flags.DEFINE_integer("rest_api_keepalive_timeout_ms", 75000, "Idle close.")
FLAGS = flags.FLAGS

_IDENTITY = lambda data: data


async def _echo(request: bytes, context) -> bytes:
  del context  # Unused.
  return request


async def _rest(request: http1_server.Request) -> http1_server.SimpleResponse:
  if request.method == "POST" and request.path == "/v1/echo":
    return http1_server.SimpleResponse(
        200, json.dumps({"size": len(request.body)}).encode()
    )
  return _error(404, "Not Found")


def _error(status: int, message: str) -> http1_server.SimpleResponse:
  return http1_server.SimpleResponse(
      status, json.dumps({"error": message}).encode()
  )


def _channel_arguments(text: str) -> dict[str, int]:
  out = {}
  for item in filter(None, text.split(",")):
    key, _, value = item.partition("=")
    out[key.strip()] = int(value)
  return out


async def _serve() -> None:
  loop = asyncio.get_running_loop()
  stop = asyncio.Event()
  for sig in (signal.SIGINT, signal.SIGTERM):
    loop.add_signal_handler(sig, stop.set)
  executor = concurrent.futures.ThreadPoolExecutor(4)
  limits = grpc_limits.from_channel_arguments(
      _channel_arguments(FLAGS.grpc_channel_arguments)
  )
  grpc_server = grpc_h2_server.Server(
      executor, limits=limits, engine=FLAGS.grpc_http2_engine
  )
  grpc_server.add_generic_rpc_handlers(
      (
          grpc.method_handlers_generic_handler(
              "test.Echo",
              {
                  "Echo": grpc.unary_unary_rpc_method_handler(
                      _echo, _IDENTITY, _IDENTITY
                  )
              },
          ),
      )
  )
  await grpc_server.add_insecure_port(f"127.0.0.1:{FLAGS.port}")
  await grpc_server.start()
  rest = http1_server.HttpServer(
      http1_server.HttpApp(
          _rest, _error, FLAGS.rest_api_timeout_in_ms / 1000.0 or None
      ),
      FLAGS.rest_api_port,
      "127.0.0.1",
      http1_server.Http1Limits(
          max_url_bytes=FLAGS.rest_api_max_url_bytes,
          max_header_bytes=FLAGS.rest_api_max_header_bytes,
          max_body_bytes=FLAGS.rest_api_max_body_bytes,
          max_server_buffer_bytes=FLAGS.rest_api_max_buffer_bytes,
          header_timeout_s=FLAGS.rest_api_header_timeout_ms / 1000.0,
          body_timeout_s=FLAGS.rest_api_body_timeout_ms / 1000.0,
          keepalive_timeout_s=FLAGS.rest_api_keepalive_timeout_ms / 1000.0,
      ),
  )
  await rest.start()
  print("serving", flush=True)
  await stop.wait()
  await asyncio.gather(grpc_server.stop(5), rest.stop(5))
  executor.shutdown(wait=False, cancel_futures=True)
  logging.info("stopped")


def main(argv) -> int:
  del argv
  try:
    import uvloop  # pylint: disable=g-import-not-at-top

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
      runner.run(_serve())
  except ImportError:
    asyncio.run(_serve())
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
