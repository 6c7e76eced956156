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
`.api`, `.entrypoint` and `.status` (the canonical code name). Sampling is
parent-based with --trace_sampling_ratio for new traces; an unsampled request
records nothing past one check. The SDK's batch processor exports from its
own thread with a bounded queue (spans past it are dropped), so export never
blocks a request. The SDK is imported only when tracing is on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
import time
from typing import Any, TypeVar

from tensorflow_serving.util import status

T = TypeVar("T")

SERVICE_NAME = "tensorflow_serving"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PREFIX = "tensorflow_serving."


class Tracing:
  """The tracer provider and exporter; one per server process."""

  def __init__(
      self,
      endpoint: str,
      sampling_ratio: float = 1.0,
      export_interval_ms: int = 1000,
      exporter: Any = None,
  ):
    # pylint: disable=g-import-not-at-top
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    from opentelemetry.sdk import resources
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import export
    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace.propagation import tracecontext
    # pylint: enable=g-import-not-at-top

    self._trace = trace
    self._kind_server = trace.SpanKind.SERVER
    self._propagator = tracecontext.TraceContextTextMapPropagator()
    self._provider = sdk_trace.TracerProvider(
        resource=resources.Resource.create({"service.name": SERVICE_NAME}),
        sampler=sampling.ParentBased(
            sampling.TraceIdRatioBased(sampling_ratio)
        ),
    )
    self._provider.add_span_processor(
        export.BatchSpanProcessor(
            exporter or trace_exporter.OTLPSpanExporter(endpoint=endpoint),
            schedule_delay_millis=export_interval_ms,
        )
    )
    self._tracer = self._provider.get_tracer(SERVICE_NAME)
    # Batch timings are time.monotonic_ns; spans want the epoch.
    self._epoch_offset_ns = time.time_ns() - time.monotonic_ns()

  def start(
      self,
      api: str,
      entrypoint: str,
      headers: Iterable[tuple[str, Any]] = (),
  ) -> RequestTrace | None:
    """The request's trace, or None when it is not sampled."""
    carrier = {}
    for key, value in headers:
      key = key.lower() if isinstance(key, str) else key.decode().lower()
      if key in (TRACEPARENT, TRACESTATE):
        carrier[key] = value if isinstance(value, str) else value.decode()
    parent = self._propagator.extract(carrier) if carrier else None
    span = self._tracer.start_span(api, context=parent, kind=self._kind_server)
    if not span.is_recording():
      span.end()
      return None
    span.set_attribute(_PREFIX + "api", api)
    span.set_attribute(_PREFIX + "entrypoint", entrypoint)
    return RequestTrace(self, span)

  def shutdown(self) -> None:
    """Exports what is queued (bounded by the SDK's timeout) and stops."""
    self._provider.shutdown()


class RequestTrace:
  """One sampled request: its span, and children added with their times."""

  __slots__ = ("_context", "_tracing", "span")

  def __init__(self, tracing: Tracing, span: Any):
    self._tracing = tracing
    self.span = span
    self._context = tracing._trace.set_span_in_context(span)  # pylint: disable=protected-access

  def child(
      self,
      name: str,
      start_ns: int,
      end_ns: int,
      attributes: Mapping[str, Any] | None = None,
  ) -> None:
    """A finished child span; times are time.time_ns()."""
    span = self._tracing._tracer.start_span(  # pylint: disable=protected-access
        name, context=self._context, start_time=start_ns, attributes=attributes
    )
    span.end(end_time=end_ns)

  def batch(
      self, enqueue_ns: int, start_ns: int, end_ns: int, batch_size: int
  ) -> None:
    """queue_wait and batch children from a batch's time.monotonic_ns times."""
    offset = self._tracing._epoch_offset_ns  # pylint: disable=protected-access
    self.child("queue_wait", enqueue_ns + offset, start_ns + offset)
    self.child(
        "batch",
        start_ns + offset,
        end_ns + offset,
        {_PREFIX + "batch_size": batch_size},
    )

  def served(self, model: str, version: int, signature: str) -> None:
    self.span.set_attribute(_PREFIX + "model", model)
    self.span.set_attribute(_PREFIX + "version", version)
    self.span.set_attribute(_PREFIX + "signature", signature)

  def finish(self, code_name: str) -> None:
    """Ends the request's span with its canonical status code name."""
    self.span.set_attribute(_PREFIX + "status", code_name)
    if code_name != "OK":
      self.span.set_status(
          self._tracing._trace.Status(  # pylint: disable=protected-access
              self._tracing._trace.StatusCode.ERROR, code_name  # pylint: disable=protected-access
          )
      )
    self.span.end()


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
