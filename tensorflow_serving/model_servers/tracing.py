"""OpenTelemetry traces of requests, exported over OTLP/HTTP (protobuf).

Off unless --otlp_traces_endpoint is set: then the transports start one
RequestTrace per Predict, Classify and Regress call (gRPC and REST), continuing
the caller's W3C `traceparent` (gRPC metadata or REST header) when there is
one, and the pipeline adds what it measured. The request's span (kind
SERVER, named after the API) gets these children, recorded after the fact
with the times measured, so a traced request takes no context switches:

    decode       request bytes to numpy (or serialized Examples)
    queue_wait   enqueued until its batch started (batched models)
    batch        the batch's run, with its `batch_size` (batched models)
    run          the model run as the request awaited it
    encode       outputs to the response

and the attributes `tensorflow_serving.model`, `.version`, `.signature`,
`.api`, `.entrypoint` and `.status` (the canonical code name).

Sampling is the SDK's (parent-based, --trace_sampling_ratio for new
traces), decided before anything is recorded: an unsampled request costs
the sampler's check and nothing more. A sampled request records plain
numbers (ids, names, times, attributes) and, when it ends, queues them as
one item; creating one SDK span object per span cost a traced request about
as much as serving it. One exporter thread drains that queue (bounded:
past it whole traces are dropped and counted) every export interval and
sends them through the SDK's OTLP/HTTP exporter client (its endpoint,
headers, compression, TLS, timeout and retries, and their OTEL_* variables).
Spans are encoded to OTLP protobuf by `SpanEncoder`, which
tracing_wire_test checks against the SDK's own encoder. An `exporter` given
instead (any SDK SpanExporter, e.g. in tests) gets SDK ReadableSpans. The
SDK is imported only when tracing is on.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
import struct
import threading
import time
from typing import Any, TypeVar

from absl import logging

from tensorflow_serving.util import proto_wire
from tensorflow_serving.util import status

T = TypeVar("T")

SERVICE_NAME = "tensorflow_serving"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PREFIX = "tensorflow_serving."

# Bounds of the exporter's queue and of one export, in traces (a trace is
# at most six spans): as the SDK's batch processor's 2048 / 512 spans, with
# room for the children.
MAX_QUEUED_TRACES = 2048
MAX_EXPORT_TRACES = 512
# At shutdown, what is queued is exported for at most this long.
SHUTDOWN_TIMEOUT_S = 5.0

# OTLP's Span.SpanKind and Status.StatusCode values, and Span.flags bits.
_KIND_INTERNAL = 1
_KIND_SERVER = 2
_STATUS_ERROR = 2
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
# Span's fixed-layout fields: trace_id (16 bytes), span_id and parent_span_id
# (8 bytes each), start and end times (fixed64); ScopeSpans.spans' tag.
_TRACE_ID_TAG = proto_wire.tag(1, proto_wire.LEN) + proto_wire.varint(16)
_SPAN_ID_TAG = proto_wire.tag(2, proto_wire.LEN) + proto_wire.varint(8)
_PARENT_ID_TAG = proto_wire.tag(4, proto_wire.LEN) + proto_wire.varint(8)
_START_TAG = 7 << 3 | proto_wire.FIXED64
_END_TAG = 8 << 3 | proto_wire.FIXED64
_TIMES = struct.Struct("<BQBQ")
_SPAN_TAG = proto_wire.tag(2, proto_wire.LEN)


class RequestTrace:
  """One sampled request: its ids, times and attributes, as plain values."""

  __slots__ = (
      "_tracing",
      "attributes",
      "children",
      "code",
      "end_ns",
      "name",
      "parent_remote",
      "parent_span_id",
      "span_id",
      "start_ns",
      "trace_id",
      "trace_state",
  )

  def __init__(
      self,
      tracing: Tracing,
      name: str,
      trace_id: int,
      span_id: int,
      parent_span_id: int,
      parent_remote: bool,
      trace_state: Any,
      attributes: dict[str, Any],
  ):
    self._tracing = tracing
    self.name = name
    self.trace_id = trace_id
    self.span_id = span_id
    self.parent_span_id = parent_span_id  # 0: a root span.
    self.parent_remote = parent_remote
    self.trace_state = trace_state  # The SDK's TraceState.
    self.attributes = attributes
    self.start_ns = time.time_ns()
    self.end_ns = 0
    self.code = ""
    # (name, start_ns, end_ns, attributes or None), in the order recorded.
    self.children: list[tuple[str, int, int, Mapping[str, Any] | None]] = []

  def child(
      self,
      name: str,
      start_ns: int,
      end_ns: int,
      attributes: Mapping[str, Any] | None = None,
  ) -> None:
    """A finished child span; times are time.time_ns()."""
    self.children.append((name, start_ns, end_ns, attributes))

  def batch(
      self, enqueue_ns: int, start_ns: int, end_ns: int, batch_size: int
  ) -> None:
    """queue_wait and batch children from a batch's time.monotonic_ns times."""
    offset = self._tracing.epoch_offset_ns
    self.children.append(
        ("queue_wait", enqueue_ns + offset, start_ns + offset, None)
    )
    self.children.append(
        (
            "batch",
            start_ns + offset,
            end_ns + offset,
            {_PREFIX + "batch_size": batch_size},
        )
    )

  def served(self, model: str, version: int, signature: str) -> None:
    self.attributes[_PREFIX + "model"] = model
    self.attributes[_PREFIX + "version"] = version
    self.attributes[_PREFIX + "signature"] = signature

  def finish(self, code_name: str) -> None:
    """Ends the request's span with its canonical status code name."""
    self.end_ns = time.time_ns()
    self.code = code_name
    self.attributes[_PREFIX + "status"] = code_name
    self._tracing.submit(self)


class Tracing:
  """The sampler, the exporter and its thread; one per server process."""

  def __init__(
      self,
      endpoint: str,
      sampling_ratio: float = 1.0,
      export_interval_ms: int = 1000,
      exporter: Any = None,
      max_queued_traces: int = MAX_QUEUED_TRACES,
  ):
    # pylint: disable=g-import-not-at-top
    from opentelemetry.sdk import resources
    from opentelemetry.sdk.trace import id_generator
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace.propagation import tracecontext
    # pylint: enable=g-import-not-at-top

    self._propagator = tracecontext.TraceContextTextMapPropagator()
    # ParentBased over this ratio: a new trace's decision is the ratio
    # sampler's, asked directly (ParentBased would look for a current span,
    # which a request here never has).
    self._root_sampler = sampling.TraceIdRatioBased(sampling_ratio)
    self._sampler = sampling.ParentBased(self._root_sampler)
    self._ids = id_generator.RandomIdGenerator()
    self.resource = resources.Resource.create({"service.name": SERVICE_NAME})
    # Batch timings are time.monotonic_ns; spans want the epoch.
    self.epoch_offset_ns = time.time_ns() - time.monotonic_ns()
    self._interval_s = export_interval_ms / 1000.0
    self._max_queued = max_queued_traces
    self._queue: collections.deque[RequestTrace] = collections.deque()
    self.dropped = 0  # Traces dropped because the queue was full.
    self._reported_dropped = 0
    self._wake = threading.Event()
    self._stopping = False
    self._last_warning = -float("inf")
    if exporter is None:
      # pylint: disable-next=g-import-not-at-top
      from opentelemetry.exporter.otlp.proto.http import trace_exporter

      self._exporter = trace_exporter.OTLPSpanExporter(endpoint=endpoint)
      self._encoder: SpanEncoder | None = SpanEncoder(
          self.resource, self.new_span_id
      )
    else:
      self._exporter = exporter
      self._encoder = None
    self._thread = threading.Thread(
        target=self._run, name="otlp_trace_exporter", daemon=True
    )
    self._thread.start()

  def start(
      self,
      api: str,
      entrypoint: str,
      headers: Iterable[tuple[str, Any]] = (),
  ) -> RequestTrace | None:
    """The request's trace, or None when it is not sampled."""
    carrier = None
    for key, value in headers:
      key = key.lower() if isinstance(key, str) else key.decode().lower()
      if key in (TRACEPARENT, TRACESTATE):
        if carrier is None:
          carrier = {}
        carrier[key] = value if isinstance(value, str) else value.decode()
    parent = None
    parent_span = None
    if carrier is not None:
      parent = self._propagator.extract(carrier)
      # pylint: disable-next=g-import-not-at-top
      from opentelemetry import trace

      parent_span = trace.get_current_span(parent).get_span_context()
      if not parent_span.is_valid:
        parent, parent_span = None, None
    trace_id = (
        parent_span.trace_id
        if parent_span is not None
        else self._ids.generate_trace_id()
    )
    sampler = self._sampler if parent is not None else self._root_sampler
    result = sampler.should_sample(parent, trace_id, api)
    if not result.decision.is_sampled():
      return None
    attributes = dict(result.attributes) if result.attributes else {}
    attributes[_PREFIX + "api"] = api
    attributes[_PREFIX + "entrypoint"] = entrypoint
    return RequestTrace(
        self,
        api,
        trace_id,
        self._ids.generate_span_id(),
        parent_span.span_id if parent_span is not None else 0,
        parent_span.is_remote if parent_span is not None else False,
        result.trace_state,
        attributes,
    )

  def new_span_id(self) -> int:
    return self._ids.generate_span_id()

  def submit(self, trace: RequestTrace) -> None:
    """Queues an ended trace for export; drops it when the queue is full."""
    queue = self._queue
    if len(queue) >= self._max_queued:
      self.dropped += 1
      return
    queue.append(trace)
    if len(queue) == MAX_EXPORT_TRACES:
      self._wake.set()

  def shutdown(self) -> None:
    """Exports what is queued (bounded by SHUTDOWN_TIMEOUT_S) and stops."""
    if self._stopping:
      return
    self._stopping = True
    self._wake.set()
    self._thread.join(SHUTDOWN_TIMEOUT_S)
    self._exporter.shutdown()

  def _run(self) -> None:
    deadline = None
    while True:
      self._wake.wait(self._interval_s)
      self._wake.clear()
      stopping = self._stopping
      if stopping and deadline is None:
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
      while self._queue and (deadline is None or time.monotonic() < deadline):
        batch = []
        while self._queue and len(batch) < MAX_EXPORT_TRACES:
          batch.append(self._queue.popleft())
        self._export(batch)
      if self.dropped != self._reported_dropped:
        self._reported_dropped = self.dropped
        self._warn("Trace export queue full")
      if stopping:
        return

  def _export(self, batch: Sequence[RequestTrace]) -> None:
    try:
      if self._encoder is not None:
        data = self._encoder.request(batch)
        # The OTLP exporter's client: its endpoint, headers, compression,
        # TLS, timeout and retries, without its per-span encoder.
        result = self._exporter._client.export(data)  # pylint: disable=protected-access
        ok = result.success
      else:
        ok = self._exporter.export(readable_spans(self, batch)).name == (
            "SUCCESS"
        )
    except Exception as exc:  # pylint: disable=broad-except
      self._warn(f"Exporting {len(batch)} traces failed: {exc}")
      return
    if not ok:
      self._warn(f"Exporting {len(batch)} traces failed")

  def _warn(self, message: str) -> None:
    """One warning a minute at most: an unreachable collector fails every
    export, and a full queue drops every trace."""
    now = time.monotonic()
    if now - self._last_warning >= 60.0:
      self._last_warning = now
      logging.warning(
          "%s (%d traces dropped on a full queue so far)",
          message,
          self.dropped,
      )


def readable_spans(tracing: Tracing, batch: Sequence[RequestTrace]) -> list:
  """SDK ReadableSpans of ended traces, for an exporter given by the caller."""
  # pylint: disable=g-import-not-at-top
  from opentelemetry import trace
  from opentelemetry.sdk import trace as sdk_trace
  from opentelemetry.sdk.util import instrumentation
  # pylint: enable=g-import-not-at-top

  scope = instrumentation.InstrumentationScope(SERVICE_NAME)
  sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
  spans = []
  for t in batch:
    context = trace.SpanContext(
        t.trace_id, t.span_id, False, sampled, t.trace_state
    )
    parent = (
        trace.SpanContext(
            t.trace_id, t.parent_span_id, t.parent_remote, sampled
        )
        if t.parent_span_id
        else None
    )
    status_ = (
        trace.Status(trace.StatusCode.ERROR, t.code)
        if t.code != "OK"
        else trace.Status(trace.StatusCode.UNSET)
    )
    spans.append(
        sdk_trace.ReadableSpan(
            t.name,
            context=context,
            parent=parent,
            resource=tracing.resource,
            attributes=dict(t.attributes),
            kind=trace.SpanKind.SERVER,
            status=status_,
            start_time=t.start_ns,
            end_time=t.end_ns,
            instrumentation_scope=scope,
        )
    )
    for name, start_ns, end_ns, attributes in t.children:
      spans.append(
          sdk_trace.ReadableSpan(
              name,
              context=trace.SpanContext(
                  t.trace_id,
                  tracing.new_span_id(),
                  False,
                  sampled,
                  t.trace_state,
              ),
              parent=context,
              resource=tracing.resource,
              attributes=dict(attributes) if attributes else None,
              kind=trace.SpanKind.INTERNAL,
              start_time=start_ns,
              end_time=end_ns,
              instrumentation_scope=scope,
          )
      )
  return spans


class SpanEncoder:
  """Ended traces as an OTLP ExportTraceServiceRequest, in wire format.

  The resource and scope are encoded once, and so are the fields every span
  of a kind shares; attributes are encoded once per distinct (key, value)
  (models, versions, signatures and codes repeat). The result parses to
  what the SDK's encoder (opentelemetry.exporter.otlp.proto.common) gives
  for the same spans as ReadableSpans; tracing_wire_test checks that.
  """

  # Bounds on the caches (distinct key/value pairs; distinct trace shapes),
  # each cleared past its bound.
  MAX_CACHED_ATTRIBUTES = 4096
  MAX_CACHED_TEMPLATES = 1024

  def __init__(self, resource: Any, new_span_id: Callable[[], int]):
    """`new_span_id` makes the children's span ids (they get theirs here,
    off the request path)."""
    w = proto_wire
    # ResourceSpans.resource: Resource{attributes}.
    self._resource = w.length_delimited(
        1, b"".join(_key_value(k, v) for k, v in resource.attributes.items())
    )
    self._resource_schema = (
        w.string(3, resource.schema_url) if resource.schema_url else b""
    )
    # ScopeSpans.scope: InstrumentationScope{name}.
    self._scope = w.length_delimited(1, w.string(1, SERVICE_NAME))
    self._new_span_id = new_span_id
    self._names: dict[str, bytes] = {}
    self._templates: dict[tuple, tuple[bytes, ...]] = {}
    self._attributes: dict[tuple[str, Any], bytes] = {}
    unset_status = w.length_delimited(15, b"")
    local = w.fixed32(16, _FLAGS_HAS_IS_REMOTE)
    remote = w.fixed32(16, _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE)
    # What follows the attributes: status and flags.
    self._ok_local = unset_status + local
    self._ok_remote = unset_status + remote
    self._local = local
    self._remote = remote
    self._server = w.uint(6, _KIND_SERVER)
    self._internal = w.uint(6, _KIND_INTERNAL)

  def _name(self, name: str) -> bytes:
    encoded = self._names.get(name)
    if encoded is None:
      encoded = self._names[name] = proto_wire.string(5, name)
    return encoded

  def _attribute(self, key: str, value: Any) -> bytes:
    """Span.attributes' entry (field 9) for one key and value."""
    cache = self._attributes
    item = (key, type(value), value)
    encoded = cache.get(item)  # type: ignore[call-overload]
    if encoded is None:
      if len(cache) >= self.MAX_CACHED_ATTRIBUTES:
        cache.clear()
      encoded = proto_wire.length_delimited(9, _key_value_body(key, value))
      cache[item] = encoded  # type: ignore[index]
    return encoded

  def _template(self, t: RequestTrace, state: str) -> tuple[bytes, ...]:
    """The bytes of `t`'s spans around their ids and times.

    Ids and times are fixed width, so every trace with the same names,
    attributes, status and parent kind encodes to the same bytes around
    them: these constants, between which `request` puts each trace's
    values (see `_values` for their order).
    """
    w = proto_wire
    state_field = w.string(3, state) if state else b""
    if t.code == "OK":
      tail = self._ok_remote if t.parent_remote else self._ok_local
    else:
      tail = w.length_delimited(
          15, w.string(2, t.code) + w.uint(3, _STATUS_ERROR)
      ) + (self._remote if t.parent_remote else self._local)
    # bytes, or an int: the width of a value put there per trace.
    segments: list[bytes | int] = []

    def span(has_parent, name, kind, attributes, tail):
      body: list[bytes | int] = [
          _TRACE_ID_TAG,
          16,
          state_field + _SPAN_ID_TAG,
          8,
      ]
      if has_parent:
        body += (_PARENT_ID_TAG, 8)
      body += (self._name(name) + kind, _TIMES.size)
      attributes = b"".join(
          self._attribute(k, v) for k, v in (attributes or {}).items()
      )
      body.append(attributes + tail)
      length = sum(x if isinstance(x, int) else len(x) for x in body)
      segments.append(_SPAN_TAG + w.varint(length))
      segments.extend(body)

    span(bool(t.parent_span_id), t.name, self._server, t.attributes, tail)
    for name, _, _, attributes in t.children:
      span(True, name, self._internal, attributes, self._ok_local)
    constants = []
    run = b""
    for segment in segments:
      if isinstance(segment, int):
        constants.append(run)
        run = b""
      else:
        run += segment
    constants.append(run)
    return tuple(constants)

  def _values(self, t: RequestTrace) -> list[bytes]:
    """`t`'s ids and times, in the order of `_template`'s gaps."""
    trace_id = t.trace_id.to_bytes(16, "big")
    span_id = t.span_id.to_bytes(8, "big")
    pack = _TIMES.pack
    values = [trace_id, span_id]
    if t.parent_span_id:
      values.append(t.parent_span_id.to_bytes(8, "big"))
    values.append(pack(_START_TAG, t.start_ns, _END_TAG, t.end_ns))
    new_id = self._new_span_id
    for _, start_ns, end_ns, _ in t.children:
      values += (
          trace_id,
          new_id().to_bytes(8, "big"),
          span_id,
          pack(_START_TAG, start_ns, _END_TAG, end_ns),
      )
    return values

  def request(self, batch: Sequence[RequestTrace]) -> bytes:
    """The ExportTraceServiceRequest of `batch`."""
    w = proto_wire
    templates = self._templates
    spans = []
    for t in batch:
      state = t.trace_state.to_header() if t.trace_state else ""
      key = (
          t.name,
          bool(t.parent_span_id),
          t.parent_remote,
          state,
          t.code,
          tuple((k, type(v), v) for k, v in t.attributes.items()),
          tuple(
              (c[0], tuple((k, type(v), v) for k, v in c[3].items()))
              if c[3]
              else c[0]
              for c in t.children
          ),
      )
      constants = templates.get(key)
      if constants is None:
        if len(templates) >= self.MAX_CACHED_TEMPLATES:
          templates.clear()
        constants = templates[key] = self._template(t, state)
      values = self._values(t)
      parts: list[bytes] = [b""] * (len(constants) + len(values))
      parts[0::2] = constants
      parts[1::2] = values
      spans.append(b"".join(parts))
    scope_spans = w.length_delimited(2, self._scope + b"".join(spans))
    resource_spans = self._resource + scope_spans + self._resource_schema
    return w.length_delimited(1, resource_spans)


def _any_value(value: Any) -> bytes:
  """An AnyValue's fields, as the SDK's encoder types them."""
  w = proto_wire
  if isinstance(value, bool):
    return w.uint(2, int(value))
  if isinstance(value, str):
    return w.string(1, value)
  if isinstance(value, int):
    return w.uint(3, value)
  if isinstance(value, float):
    return w.double(4, value)
  if isinstance(value, bytes):
    return w.length_delimited(7, value)
  if isinstance(value, Sequence):
    # ArrayValue{values: repeated AnyValue}.
    return w.length_delimited(
        5, b"".join(w.length_delimited(1, _any_value(v)) for v in value)
    )
  raise TypeError(f"Unsupported attribute value {value!r}")


def _key_value_body(
    key: str, value: Any, keys: dict[str, bytes] | None = None
) -> bytes:
  """A KeyValue message's fields: key, then value."""
  encoded = keys.get(key) if keys is not None else None
  if encoded is None:
    encoded = proto_wire.string(1, key)
    if keys is not None:
      keys[key] = encoded
  return encoded + proto_wire.length_delimited(2, _any_value(value))


def _key_value(
    key: str, value: Any, keys: dict[str, bytes] | None = None
) -> bytes:
  """A Resource's `attributes` entry (field 1)."""
  return proto_wire.length_delimited(1, _key_value_body(key, value, keys))


async def traced(trace: RequestTrace, work: Awaitable[T]) -> T:
  """Awaits a transport's work for one request; ends its trace with the code."""
  code = "OK"
  try:
    return await work
  except status.ServingError as exc:
    code = exc.code.name
    raise
  except Exception:
    code = "INTERNAL"
    raise
  except BaseException:
    code = "CANCELLED"
    raise
  finally:
    trace.finish(code)
