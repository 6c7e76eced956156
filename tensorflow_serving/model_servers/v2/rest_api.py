"""The Open Inference Protocol's REST endpoints, around the one pipeline.

http_rest_api_handler routes `/v2/...` here; each endpoint decodes with
rest_codec, hands numpy to the pipeline (inference) or asks ServerCore
(health, metadata, repository), and encodes. Errors are `{"error": ...}`
with the HTTP status Triton gives the same failure.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse

import orjson

from tensorflow_serving.model_servers import admission
from tensorflow_serving.model_servers import pipeline as pipeline_lib
from tensorflow_serving.model_servers.v2 import inference
from tensorflow_serving.model_servers.v2 import repository as repository_lib
from tensorflow_serving.model_servers.v2 import rest_codec
from tensorflow_serving.util import status

# Request bodies up to this size are decoded on the event loop; larger ones
# on a worker thread, so that one big body cannot stall other connections.
INLINE_BODY_LIMIT_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Reply:
  status: int
  body: bytes
  content_type: str = rest_codec.JSON_TYPE
  # Extra response header lines (CRLF-terminated).
  headers: bytes = b""


def error_reply(exc: status.ServingError) -> Reply:
  headers = b""
  if exc.retry_after_s is not None:  # A refusal under load: when to retry.
    headers = b"Retry-After: %s\r\n" % admission.retry_after_header(
        exc.retry_after_s
    ).encode("ascii")
  return Reply(
      rest_codec.http_status(exc.code),
      rest_codec.error_body(exc.message),
      headers=headers,
  )


_EMPTY = Reply(200, b"")
# The protocol's health responses: the status code is the answer, and the
# body is the spec's `{"live": $bool}` / `{"ready": $bool}` object, which
# KServe's own REST client parses (tritonclient reads the code only).
_LIVE = Reply(200, b'{"live":true}')
_READY = Reply(200, b'{"ready":true}')


class RestApi:
  """Each method answers one v2 route; ServingErrors are the caller's to render."""

  def __init__(
      self,
      pipeline: pipeline_lib.Pipeline,
      repository: repository_lib.ModelRepository,
  ):
    self._pipeline = pipeline
    self._core = pipeline.core
    self._repository = repository

  def server_metadata(self) -> Reply:
    return Reply(200, rest_codec.server_metadata_doc())

  def health(self, kind: str) -> Reply:
    if kind == "live":
      return _LIVE
    if inference.server_ready(self._core):
      return _READY
    # Triton answers "not ready" with 400 and no body.
    return Reply(400, b"")

  def model_ready(self, name: str, version: str | None) -> Reply:
    spec = inference.model_spec(name, version)
    return (
        _EMPTY if inference.model_ready(self._core, spec) else Reply(400, b"")
    )

  async def model_metadata(
      self, name: str, version: str | None, query: str
  ) -> Reply:
    spec = inference.model_spec(name, version)
    signature_name = _query_parameter(query, inference.SIGNATURE_NAME)
    meta = await self._pipeline.runner.call(
        inference.model_metadata, self._core, spec, signature_name
    )
    return Reply(200, rest_codec.metadata_doc(meta))

  async def infer(
      self,
      name: str,
      version: str | None,
      body: bytes,
      header_length: str | None,
      deadline: float | None = None,
  ) -> Reply:
    spec = inference.model_spec(name, version)
    served = await self._pipeline.predict(
        spec,
        lambda lookup: rest_codec.decode_infer(body, header_length, lookup),
        pipeline_lib.REST,
        off_loop=len(body) > INLINE_BODY_LIMIT_BYTES,
        label=inference.API_LABEL,
        api=inference.SIGNATURE_API,
        deadline=deadline,
    )
    encoded = rest_codec.encode_infer(
        served.request, served.outputs, served.id.name, served.id.version
    )
    headers = b""
    if encoded.header_length is not None:
      headers = b"%s: %d\r\n" % (
          rest_codec.HEADER_LENGTH.encode(),
          encoded.header_length,
      )
    return Reply(200, encoded.body, encoded.content_type, headers)

  async def repository_index(self, body: bytes) -> Reply:
    doc = rest_codec.parse_json(body, "repository index request")
    ready = doc.get("ready", False)
    if not isinstance(ready, bool):
      raise status.invalid_argument("ready must be a boolean")
    entries = await self._pipeline.runner.call(self._repository.index, ready)
    return Reply(
        200,
        orjson.dumps(
            [
                {
                    "name": e.name,
                    "version": e.version,
                    "state": e.state,
                    "reason": e.reason,
                }
                for e in entries
            ]
        ),
    )

  async def repository_load(
      self, name: str, body: bytes, deadline: float | None = None
  ) -> Reply:
    """Answers once the model serves; `deadline` is the REST request's."""
    doc = rest_codec.parse_json(body, "model load request")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
      raise status.invalid_argument("parameters must be a JSON object")
    await self._repository.load(
        name, params.get("config"), _time_left(deadline)
    )
    return _EMPTY

  async def repository_unload(
      self, name: str, body: bytes, deadline: float | None = None
  ) -> Reply:
    rest_codec.parse_json(body, "model unload request")
    await self._repository.unload(name, _time_left(deadline))
    return _EMPTY


def _time_left(deadline: float | None) -> float | None:
  """Seconds until `deadline` (time.monotonic's clock), never negative."""
  return None if deadline is None else max(0.0, deadline - time.monotonic())


def _query_parameter(query: str, key: str) -> str:
  values = urllib.parse.parse_qs(query).get(key)
  return values[-1] if values else ""
