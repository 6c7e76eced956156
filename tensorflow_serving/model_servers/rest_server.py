"""The REST API's glue onto the HTTP/1.1 engine (util/net/http1).

The engine knows nothing of the API; this hands it what it needs: routing
(`/v1/...` to HttpRestApiHandler, the Prometheus path, CORS preflights),
error rendering as upstream's `{ "error": "..." }` bodies, the REST
deadline and the CORS headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
import dataclasses
import re
import ssl
import time
from typing import Any

from tensorflow_serving.model_servers import http_rest_api_handler
from tensorflow_serving.util import metrics
from tensorflow_serving.util.json_tensor import predict_response
from tensorflow_serving.util.net.http1 import server as http1_server

Response = http_rest_api_handler.Response
Request = http1_server.Request

_ORIGIN_RE = re.compile(r"https?://.*", re.IGNORECASE)
_CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)


@dataclasses.dataclass(frozen=True)
class HttpOptions:
  """REST transport settings from the binary's flags."""

  timeout_s: float | None = 30.0
  enable_cors: bool = False
  # Serve Prometheus text here when monitoring is enabled.
  prometheus_path: str | None = None
  limits: http1_server.Http1Limits = http1_server.Http1Limits()
  # Beyond upstream: serve HTTPS (--rest_api_ssl_config_file); None = HTTP.
  ssl_context: ssl.SSLContext | None = None


def error(http_status: int, message: str) -> Response:
  """Upstream's error body for a status the engine or routing chose."""
  return Response(http_status, predict_response.format_error(message))


class RestApp:
  """Routes a request: an immediate Response, or the handler's coroutine."""

  def __init__(
      self,
      handler: http_rest_api_handler.HttpRestApiHandler,
      options: HttpOptions,
  ):
    self.handler = handler
    self.options = options

  def route(self, request: Request) -> Response | Coroutine[Any, Any, Response]:
    method, path = request.method, request.path
    options = self.options
    if (
        options.prometheus_path
        and method == "GET"
        and path == options.prometheus_path
    ):
      return Response(200, metrics.exposition(), metrics.CONTENT_TYPE)
    if not http_rest_api_handler.API_PATH_RE.fullmatch(path):
      return error(404, "Not Found")
    if options.enable_cors and method == "OPTIONS":
      return self._preflight(request)
    # The one call into the REST API, with the time the engine gives it
    # (--rest_api_timeout_in_ms from the request's first byte).
    deadline = None
    if options.timeout_s is not None:
      # Request.started is on the engine's clock, the loop's.
      loop_now = asyncio.get_running_loop().time()
      deadline = time.monotonic() + (
          request.started + options.timeout_s - loop_now
      )
    return self.handler.handle(
        method, path, request.body, request.headers, request.query, deadline
    )

  def _preflight(self, request: Request) -> Response:
    origin = request.headers.get(b"origin", b"").decode("latin-1")
    if not _ORIGIN_RE.fullmatch(origin):
      return error(400, "Origin header is missing in CORS preflight")
    return Response(200, b"", "text/plain")


def make_app(
    handler: http_rest_api_handler.HttpRestApiHandler,
    options: HttpOptions = HttpOptions(),
) -> http1_server.HttpApp:
  """The engine's view of the REST API: every `/v1/...` request to `handler`."""
  app = RestApp(handler, options)
  return http1_server.HttpApp(
      route=app.route,
      error=error,
      timeout_s=options.timeout_s,
      extra_headers=_CORS_HEADERS if options.enable_cors else (),
  )


def make_server(
    app: http1_server.HttpApp,
    port: int,
    options: HttpOptions = HttpOptions(),
    host: str | None = None,
) -> http1_server.HttpServer:
  return http1_server.HttpServer(
      app,
      port,
      host=host,
      limits=options.limits,
      ssl_context=options.ssl_context,
  )
