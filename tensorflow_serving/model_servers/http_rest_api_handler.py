"""The REST API (`/v1/...`): JSON in and out around the shared pipeline.

Kept free of any HTTP library, as upstream keeps http_rest_api_handler apart
from its HTTP server: `handle(method, path, body)` returns a Response and
never raises. Like the gRPC servicers, it only decodes (util/json_tensor,
straight to numpy) and encodes; resolving the servable and signature,
running, and metrics are the pipeline's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
import dataclasses
import re
import time
from typing import Any
import urllib.parse

from google.protobuf import json_format
from google.protobuf import wrappers_pb2
import orjson

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.model_servers import access_token
from tensorflow_serving.model_servers import admission
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers import tracing as tracing_lib
from tensorflow_serving.model_servers.status_page import (
    routes as status_page_lib,
)
from tensorflow_serving.model_servers.v2 import repository as v2_repository
from tensorflow_serving.model_servers.v2 import rest_api as v2_rest_api
from tensorflow_serving.servables.tensorflow import example_input
from tensorflow_serving.util import status
from tensorflow_serving.util.json_tensor import document
from tensorflow_serving.util.json_tensor import example_request
from tensorflow_serving.util.json_tensor import predict_request
from tensorflow_serving.util.json_tensor import predict_response

REST = pipeline_lib.REST

# One pattern for every route; the groups say which API a path addresses.
_ROUTE_RE = re.compile(
    r"/v1/(?:"
    r"models(?:/(?P<name>[^/:]+))?"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?::(?P<verb>classify|regress|predict)|/(?P<metadata>metadata))?"
    r"|health/(?P<health>live|ready))",
    re.IGNORECASE,
)
# Beyond upstream: the Open Inference Protocol (model_servers/v2). Names and
# versions are single path segments (%-encoded); a version is a number.
_V2_ROUTE_RE = re.compile(
    r"/v2(?:"
    r"/health/(?P<health>live|ready)"
    r"|/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
    r"(?:/(?P<verb>ready|infer))?"
    r"|/repository/(?P<index>index)"
    r"|/repository/models/(?P<repo_name>[^/]+)/(?P<repo_verb>load|unload)"
    r")?"
)
# Beyond upstream: `/` and `/status` are the status page (status_page/).
API_PATH_RE = re.compile(r"/v1/.*|/v2(?:/.*)?|/|/status", re.IGNORECASE)

_INT64_MAX = 2**63 - 1
# Bodies up to this size are decoded on the event loop (a 784-float instance
# is ~5 KB and parses in well under 0.1 ms); larger ones, whose JSON would
# stall every other connection, are decoded on a worker thread.
INLINE_BODY_LIMIT_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Response:
  status: int
  body: bytes
  content_type: str = "application/json"
  # Extra header lines (CRLF-terminated), e.g. the v2 binary extension's,
  # or Retry-After on a refusal under load.
  headers: bytes = b""


def _as_dict(message) -> dict:
  # Field names as in the proto and default values printed, as upstream's
  # REST responses (int64 values come out as strings).
  return json_format.MessageToDict(
      message,
      preserving_proto_field_name=True,
      always_print_fields_with_no_presence=True,
  )


def _json(doc: dict) -> bytes:
  return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def error_response(exc: status.ServingError) -> Response:
  """Upstream's error: the HTTP status of the code, `{ "error": ... }`.

  A refusal under load also says when to retry (Retry-After).
  """
  headers = b""
  if exc.retry_after_s is not None:
    headers = b"Retry-After: %s\r\n" % admission.retry_after_header(
        exc.retry_after_s
    ).encode("ascii")
  return Response(
      status.http_status(exc.code),
      predict_response.format_error(exc.message),
      headers=headers,
  )


class HttpRestApiHandler:
  """Maps `/v1/...` requests onto the pipeline; errors become JSON bodies."""

  error = staticmethod(error_response)

  def __init__(
      self,
      pipeline: pipeline_lib.Pipeline,
      repository: v2_repository.ModelRepository | None = None,
      model_service_token: str | None = None,
      status_page: status_page_lib.StatusPage | None = None,
  ):
    self._pipeline = pipeline
    # Beyond upstream: `/`, `/status`, `/v1/status`. The server passes the
    # one it starts; without one they answer as upstream does.
    self._status_page = status_page or status_page_lib.StatusPage(
        pipeline, status_page_lib.StatusPageOptions(enabled=False)
    )
    # Beyond upstream: v2 repository load/unload need it when set.
    self._token = access_token.encoded(model_service_token)
    self._v2 = v2_rest_api.RestApi(
        pipeline,
        repository or v2_repository.ModelRepository(pipeline.core, False),
    )

  async def handle(
      self,
      method: str,
      path: str,
      body: bytes | bytearray,
      headers: Mapping[bytes, bytes] | None = None,
      query: str = "",
      deadline: float | None = None,
  ) -> Response:
    """Processes one request from the event loop. Never raises.

    `headers` (lower-case names) are read for a trace's `traceparent`.
    `deadline` (time.monotonic's clock) is when the transport gives up on
    the request: a model run that cannot finish by then is refused early.
    """
    if path.startswith("/v2"):
      return await self._handle_v2(
          method.upper(), path, body, headers, query, deadline
      )
    try:
      return await self._dispatch(method.upper(), path, body, headers, deadline)
    except status.ServingError as exc:
      return error_response(exc)
    except Exception as exc:  # pylint: disable=broad-except
      return error_response(status.internal(f"{type(exc).__name__}: {exc}"))

  async def _dispatch(
      self,
      method: str,
      path: str,
      body: bytes | bytearray,
      headers: Mapping[bytes, bytes] | None,
      deadline: float | None,
  ) -> Response:
    page = self._status_page.route(method, path)
    if page is not None:
      return Response(*await page())
    route = _ROUTE_RE.fullmatch(path)
    if route is None:
      raise status.invalid_argument(f"Malformed request: {method} {path}")
    name, version, label, verb, metadata, health = route.group(
        "name", "version", "label", "verb", "metadata", "health"
    )
    if method == "POST" and verb and name:
      spec = _model_spec(name, version, label)
      off_loop = len(body) > INLINE_BODY_LIMIT_BYTES
      verb = verb.lower()
      if verb == "predict":
        run = self._predict
      elif verb == "classify":
        run = self._classify
      else:
        run = self._regress
      return await self._traced(
          verb.capitalize(),
          headers,
          lambda trace: run(spec, body, off_loop, trace, deadline),
      )
    if method == "GET" and not verb:
      if health:
        return await self._health(health.lower())
      if not name:
        if version is None and label is None and metadata is None:
          return await self._list_models()
        # Upstream: e.g. /v1/models/versions/3 matches with no name.
        raise status.invalid_argument("Missing model name in request.")
      spec = _model_spec(name, version, label)
      if metadata:
        return await self._metadata(spec)
      return await self._status(spec)
    raise status.invalid_argument(f"Malformed request: {method} {path}")

  async def _handle_v2(
      self,
      method: str,
      path: str,
      body: bytes,
      headers: Mapping[bytes, bytes] | None,
      query: str,
      deadline: float | None,
  ) -> Response:
    """The Open Inference Protocol; its errors as Triton words their status."""
    try:
      reply = await self._dispatch_v2(
          method, path, body, headers or {}, query, deadline
      )
    except status.ServingError as exc:
      reply = v2_rest_api.error_reply(exc)
    except Exception as exc:  # pylint: disable=broad-except
      reply = v2_rest_api.error_reply(
          status.internal(f"{type(exc).__name__}: {exc}")
      )
    return Response(reply.status, reply.body, reply.content_type, reply.headers)

  async def _dispatch_v2(
      self,
      method: str,
      path: str,
      body: bytes,
      headers: Mapping[bytes, bytes],
      query: str,
      deadline: float | None,
  ) -> v2_rest_api.Reply:
    route = _V2_ROUTE_RE.fullmatch(path)
    if route is None:
      raise status.not_found(f"Not Found: {method} {path}")
    v2 = self._v2
    name, version, verb = route.group("name", "version", "verb")
    if name is not None:
      name = urllib.parse.unquote(name)
      version = urllib.parse.unquote(version) if version else None
      if verb == "infer":
        _expect(method, "POST", path)
        length = headers.get(b"inference-header-content-length")
        return await v2.infer(
            name,
            version,
            body,
            None if length is None else length.decode(),
            deadline,
        )
      _expect(method, "GET", path)
      if verb == "ready":
        return v2.model_ready(name, version)
      return await v2.model_metadata(name, version, query)
    if route.group("health"):
      _expect(method, "GET", path)
      return v2.health(route.group("health"))
    if route.group("index"):
      _expect(method, "POST", path)
      return await v2.repository_index(body)
    repo_name = route.group("repo_name")
    if repo_name is not None:
      _expect(method, "POST", path)
      repo_name = urllib.parse.unquote(repo_name)
      verb = route.group("repo_verb")
      if self._token is not None and not access_token.bearer_matches(
          headers.get(b"authorization"), self._token
      ):
        raise access_token.refusal(f"The repository's model {verb}")
      if verb == "load":
        return await v2.repository_load(repo_name, body, deadline)
      return await v2.repository_unload(repo_name, body, deadline)
    _expect(method, "GET", path)
    return v2.server_metadata()

  # --- Model APIs, through the pipeline ---------------------------------------

  def _traced(
      self,
      api: str,
      headers: Mapping[bytes, bytes] | None,
      make: Callable[[Any], Awaitable[Response]],
  ) -> Awaitable[Response]:
    """`make(trace)`, traced when tracing is on and samples this call."""
    tracing = self._pipeline.tracing
    if tracing is None:
      return make(None)
    trace = tracing.start(api, REST, (headers or {}).items())
    if trace is None:
      return make(None)
    return tracing_lib.traced(trace, make(trace))

  async def _predict(
      self,
      spec: model_pb2.ModelSpec,
      body: bytes | bytearray,
      off_loop: bool,
      trace: Any,
      deadline: float | None,
  ) -> Response:
    served = await self._pipeline.predict(
        spec,
        lambda lookup: predict_request.decode_predict(body, lookup),
        REST,
        off_loop=off_loop,
        api=pipeline_lib.Api.PREDICT_JSON,
        trace=trace,
        deadline=deadline,
    )
    return _encoded(
        trace,
        lambda: predict_response.format_predict_response(
            served.outputs, served.request.request_format
        ),
    )

  async def _classify(
      self,
      spec: model_pb2.ModelSpec,
      body: bytes | bytearray,
      off_loop: bool,
      trace: Any,
      deadline: float | None,
  ) -> Response:
    served = await self._pipeline.classify(
        spec,
        lambda lookup: _examples(body, lookup),
        REST,
        off_loop=off_loop,
        trace=trace,
        deadline=deadline,
    )
    return _encoded(
        trace,
        lambda: example_request.format_classify_response(
            served.classifications
        ),
    )

  async def _regress(
      self,
      spec: model_pb2.ModelSpec,
      body: bytes | bytearray,
      off_loop: bool,
      trace: Any,
      deadline: float | None,
  ) -> Response:
    served = await self._pipeline.regress(
        spec,
        lambda lookup: _examples(body, lookup),
        REST,
        off_loop=off_loop,
        trace=trace,
        deadline=deadline,
    )
    return _encoded(
        trace, lambda: example_request.format_regress_response(served.values)
    )

  async def _metadata(self, spec: model_pb2.ModelSpec) -> Response:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec, metadata_field=["signature_def"]
    )
    response = await self._pipeline.runner.call(
        self._pipeline.get_model_metadata, request
    )
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    return Response(
        200,
        _json(
            {
                "model_spec": _as_dict(response.model_spec),
                "metadata": {"signature_def": _as_dict(sig_map)},
            }
        ),
    )

  async def _status(self, spec: model_pb2.ModelSpec) -> Response:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = spec.name
    # Upstream ignores a label here and reports every version.
    if spec.WhichOneof("version_choice") == "version":
      request.model_spec.version.CopyFrom(spec.version)
    response = await self._pipeline.models.get_model_status(request)
    return Response(200, _json(_as_dict(response)))

  # --- Beyond upstream ------------------------------------------------------
  # The listing, readiness and the status page read model state as
  # GetModelStatus does, through the pipeline's model view: under
  # --num_workers that is every worker's merged answer, so they agree
  # whichever worker takes the request.

  async def _model_statuses(self) -> list[tuple[str, dict]]:
    """Each configured model's GetModelStatus as JSON (no versions: [])."""
    return [
        (name, _as_dict(response))
        for name, response in await self._pipeline.models.statuses()
    ]

  async def _list_models(self) -> Response:
    """Beyond upstream (which answers 400): every configured model's versions."""
    models = [
        {"name": name, **doc} for name, doc in await self._model_statuses()
    ]
    return Response(200, _json({"models": models}))

  async def _health(self, kind: str) -> Response:
    """Beyond upstream: liveness, and readiness that means 'can serve'.

    Upstream's status endpoint answers 200 even with nothing loaded, so
    orchestrators have to parse its body; /v1/health/ready answers 503 until
    every configured model has an AVAILABLE version, and while this process
    cannot serve (stopping, or no request thread free: the server's check).
    """
    if kind == "live":
      return Response(200, _json({"status": "live"}))
    statuses = await self._model_statuses()
    missing = [
        name
        for name, doc in statuses
        if not any(
            v.get("state") == "AVAILABLE"
            for v in doc.get("model_version_status", [])
        )
    ]
    if missing:
      raise status.unavailable(
          "Models with no AVAILABLE version: " + ", ".join(sorted(missing))
      )
    check = self._pipeline.control.ready_check
    problem = await check() if check is not None else None
    if problem is not None:
      raise status.unavailable(problem)
    names = sorted(name for name, _ in statuses)
    return Response(200, _json({"status": "ready", "models": names}))


def _expect(method: str, expected: str, path: str) -> None:
  if method != expected:
    raise status.invalid_argument(
        f"{path} takes {expected} requests, not {method}"
    )


def _encoded(trace: Any, encode: Callable[[], bytes]) -> Response:
  """A 200 with `encode()`'s body; its time is the trace's encode span."""
  if trace is None:
    return Response(200, encode())
  start = time.time_ns()
  body = encode()
  trace.child("encode", start, time.time_ns())
  return Response(200, body)


def _examples(body: bytes | bytearray, lookup: pipeline_lib.SignatureLookup):
  """Upstream's REST order: the whole body first, then the signature."""
  request = example_request.parse_example_request(
      document.decode_json_body(body)
  )
  sig = lookup(request.signature_name)
  return sig, example_input.examples_tensor(request.examples, request.context)


def _model_spec(
    name: str, version: str | None, label: str | None
) -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
  if version is not None:
    value = int(version)
    if value > _INT64_MAX:
      raise status.invalid_argument(
          f"Failed to convert version: {version} to numeric."
      )
    spec.version.CopyFrom(wrappers_pb2.Int64Value(value=value))
  elif label is not None:
    spec.version_label = urllib.parse.unquote(label)
  return spec
