"""The REST API (`/v1/...`) as a pure function of method, path and body.

Kept free of any HTTP library so it can be tested directly, as upstream keeps
http_rest_api_handler apart from its HTTP server. JSON tensors decode straight
to numpy and run through the same SavedModelBundle.run as gRPC Predict.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.parse

from google.protobuf import json_format
from google.protobuf import wrappers_pb2
import orjson

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.model_servers import get_model_metadata_impl
from tensorflow_serving.model_servers import get_model_status_impl
from tensorflow_serving.model_servers import model_runner
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import json_tensor
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

_POST_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
_GET_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)
_HEALTH_RE = re.compile(r"/v1/health/(live|ready)", re.IGNORECASE)
API_PATH_RE = re.compile(r"/v1/.*", re.IGNORECASE)

_INT64_MAX = 2**63 - 1
# Predict bodies up to this size are parsed on the event loop (a 784-float
# instance is ~5 KB and parses in well under 0.1 ms).
INLINE_BODY_LIMIT_BYTES = 64 * 1024


@dataclasses.dataclass
class _Route:
  """What a request addressed, for its request_count/latency metrics."""

  model_name: str | None = None
  api: str = ""


@dataclasses.dataclass(frozen=True)
class Response:
  status: int
  body: bytes
  content_type: str = "application/json"


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


class HttpRestApiHandler:
  """Maps `/v1/...` requests onto ServerCore; errors become {"error": ...}."""

  def __init__(self, core: server_core_lib.ServerCore):
    self._core = core

  def handle(self, method: str, path: str, body: bytes) -> Response:
    """Processes one request in the calling thread. Never raises."""
    route = _Route()
    return self._finish(
        route,
        time.perf_counter(),
        lambda: self._dispatch(method.upper(), path, body, route),
    )

  async def handle_async(
      self,
      method: str,
      path: str,
      body: bytes,
      runner: model_runner.ModelRunner,
  ) -> Response:
    """Processes one request from the event loop. Never raises.

    Predict with an ordinary-sized body stays on the loop and only awaits the
    model run (a batch, or a worker thread); everything else, and large
    bodies whose JSON would stall the loop, runs on a worker thread.
    """
    m = _POST_RE.fullmatch(path) if method.upper() == "POST" else None
    if (
        m is None
        or m.group(4).lower() != "predict"
        or len(body) > INLINE_BODY_LIMIT_BYTES
    ):
      return await runner.call(self.handle, method, path, body)
    start = time.perf_counter()
    route = _Route()
    try:
      spec = _model_spec(*m.group(1, 2, 3))
      route.model_name, route.api = spec.name, "predict"
      simple = json_tensor.parse_simple_predict(body)
      doc = None if simple is not None else json_tensor.decode_json_body(body)
      with self._core.get_servable_handle(spec) as handle:
        bundle = handle.servable
        inputs = None
        if simple is not None:
          sig = _signature(bundle, simple.signature_name)
          inputs = json_tensor.simple_predict_inputs(simple, sig.inputs)
          fmt = simple.request_format
        if inputs is None:
          if doc is None:
            doc = json_tensor.decode_json_body(body)
          sig = _predict_signature(bundle, doc)
          inputs, fmt = json_tensor.parse_predict_inputs(doc, sig.inputs)
        outputs = await runner.run(bundle, sig, inputs)
      body_out = json_tensor.format_predict_response(outputs, fmt)
    except Exception as exc:  # pylint: disable=broad-except
      return self._finish(route, start, _raiser(exc))
    return self._finish(route, start, lambda: Response(200, body_out))

  def _finish(self, route: _Route, start: float, produce) -> Response:
    """Runs `produce`, turns errors into JSON bodies, records metrics."""
    try:
      response = produce()
      code = status.Code.OK
    except status.ServingError as exc:
      response, code = self.error(exc), exc.code
    except Exception as exc:  # pylint: disable=broad-except
      response, code = (
          self.error(status.internal(f"{type(exc).__name__}: {exc}")),
          status.Code.INTERNAL,
      )
    if route.model_name is not None:
      metrics.record_request(
          route.model_name, route.api, "REST", code.name, start
      )
    return response

  @staticmethod
  def error(exc: status.ServingError) -> Response:
    return Response(
        status.http_status(exc.code), json_tensor.format_error(exc.message)
    )

  def _dispatch(
      self, method: str, path: str, body: bytes, route: _Route
  ) -> Response:
    if method == "POST":
      m = _POST_RE.fullmatch(path)
      if m:
        spec = _model_spec(*m.group(1, 2, 3))
        verb = m.group(4).lower()
        route.model_name, route.api = spec.name, verb
        if verb == "predict":
          return self._predict(spec, body)
        return self._classify_or_regress(verb, spec, body)
    elif method == "GET":
      health = _HEALTH_RE.fullmatch(path)
      if health:
        return self._health(health.group(1).lower())
      m = _GET_RE.fullmatch(path)
      if m:
        name, version, label, metadata = m.groups()
        if not name:
          if version is None and label is None and metadata is None:
            return self._list_models()
          # Upstream: e.g. /v1/models/versions/3 matches with no name.
          raise status.invalid_argument("Missing model name in request.")
        spec = _model_spec(name, version, label)
        if metadata:
          route.model_name, route.api = spec.name, "get_model_metadata"
          return self._metadata(spec)
        return self._status(spec)
    raise status.invalid_argument(f"Malformed request: {method} {path}")

  def _list_models(self) -> Response:
    """Beyond upstream (which answers 400): every configured model's versions."""
    models = []
    for model in self._core.config.model_config_list.config:
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = model.name
      try:
        status_doc = _as_dict(
            get_model_status_impl.get_model_status(self._core.monitor, request)
        )
      except status.ServingError:
        status_doc = {"model_version_status": []}
      models.append({"name": model.name, **status_doc})
    return Response(200, _json({"models": models}))

  def _health(self, kind: str) -> Response:
    """Beyond upstream: liveness, and readiness that means 'can serve'.

    Upstream's status endpoint answers 200 even with nothing loaded, so
    orchestrators have to parse its body; /v1/health/ready answers 503 until
    every configured model has an AVAILABLE version.
    """
    if kind == "live":
      return Response(200, _json({"status": "live"}))
    names = [m.name for m in self._core.config.model_config_list.config]
    available = {
        sid.name for sid in self._core.manager.list_available_servable_ids()
    }
    missing = [n for n in names if n not in available]
    if missing:
      raise status.unavailable(
          "Models with no AVAILABLE version: " + ", ".join(sorted(missing))
      )
    return Response(200, _json({"status": "ready", "models": sorted(names)}))

  def _status(self, spec: model_pb2.ModelSpec) -> Response:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = spec.name
    # Upstream ignores a label here and reports every version.
    if spec.WhichOneof("version_choice") == "version":
      request.model_spec.version.CopyFrom(spec.version)
    response = get_model_status_impl.get_model_status(
        self._core.monitor, request
    )
    return Response(200, _json(_as_dict(response)))

  def _metadata(self, spec: model_pb2.ModelSpec) -> Response:
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec=spec, metadata_field=["signature_def"]
    )
    response = get_model_metadata_impl.get_model_metadata(self._core, request)
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

  def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> Response:
    doc = json_tensor.decode_json_body(body)
    with self._core.get_servable_handle(spec) as handle:
      bundle = handle.servable
      sig = _predict_signature(bundle, doc)
      inputs, fmt = json_tensor.parse_predict_inputs(doc, sig.inputs)
      outputs = bundle.run(sig, inputs)
    return Response(200, json_tensor.format_predict_response(outputs, fmt))

  def _classify_or_regress(
      self, verb: str, spec: model_pb2.ModelSpec, body: bytes
  ) -> Response:
    request = json_tensor.parse_example_request(
        json_tensor.decode_json_body(body)
    )
    with self._core.get_servable_handle(spec) as handle:
      if verb == "classify":
        results = classifier.classify_serialized(
            handle.servable,
            request.signature_name,
            request.examples,
            request.context,
        )
        return Response(200, json_tensor.format_classify_response(results))
      values = regressor.regress_serialized(
          handle.servable,
          request.signature_name,
          request.examples,
          request.context,
      )
      return Response(200, json_tensor.format_regress_response(values))


def _predict_signature(bundle, doc) -> signature_lib.Signature:
  """REST looks the signature up before Predict, with its own message."""
  name = doc.get("signature_name")
  if name and not isinstance(name, str):
    raise status.invalid_argument("'signature_name' must be a string")
  return _signature(bundle, name or None)


def _signature(bundle, name: str | None) -> signature_lib.Signature:
  key = name or signature_lib.DEFAULT_SERVING_SIGNATURE_DEF_KEY
  sig = bundle.signatures.get(key)
  if sig is None:
    raise status.invalid_argument(
        f'Serving signature name: "{key}" not found in signature def'
    )
  return sig


def _raiser(exc: Exception):
  def produce():
    raise exc

  return produce


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
