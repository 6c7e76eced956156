"""The exporter's OTLP bytes parse to what the SDK's own encoder writes."""

from __future__ import annotations

import itertools

from absl.testing import absltest
from opentelemetry.exporter.otlp.proto.common import trace_encoder
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace.export import in_memory_span_exporter

from tensorflow_serving.model_servers import tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def ids():
  return itertools.count(0x1000).__next__


class TracingWireTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    exporter = in_memory_span_exporter.InMemorySpanExporter()
    self.tracing = tracing.Tracing("unused", 1.0, exporter=exporter)
    self.addCleanup(self.tracing.shutdown)

  def traces(self) -> list[tracing.RequestTrace]:
    t = self.tracing
    remote = t.start(
        "Predict",
        "GRPC",
        [("traceparent", PARENT), ("tracestate", "vendor=a,other=b")],
    )
    remote.child("decode", 10, 20)
    remote.batch(30, 40, 50, 7)
    remote.child("run", 25, 60)
    remote.served("half", 3, "serving_default")
    root = t.start("Regress", "REST")
    root.child("decode", 100, 200)
    failed = t.start("Classify", "REST", [(b"traceparent", PARENT.encode())])
    out = [remote, root, failed]
    for trace, code in zip(out, ("OK", "OK", "INVALID_ARGUMENT")):
      # What finish() records, without queuing for the in-memory exporter.
      trace.end_ns = trace.start_ns + 1000
      trace.code = code
      trace.attributes["tensorflow_serving.status"] = code
    return out

  def test_wire_bytes_parse_to_the_sdk_encoding(self):
    # The second three have the first three's shapes (the encoder reuses
    # their bytes) with their own ids and times.
    traces = self.traces() + self.traces()
    traces[3].children[0] = ("decode", 11, 12**15, None)
    encoder = tracing.SpanEncoder(self.tracing.resource, ids())
    ours = trace_service_pb2.ExportTraceServiceRequest.FromString(
        encoder.request(traces)
    )
    self.tracing.new_span_id = ids()
    spans = tracing.readable_spans(self.tracing, traces)
    theirs = trace_encoder.encode_spans(spans)
    self.assertEqual(ours, theirs)
    # And what a receiver sees: five spans of the first trace, the remote
    # parent kept, the error status on the failed one.
    got = ours.resource_spans[0].scope_spans[0].spans
    self.assertLen(got, 2 * (5 + 2 + 1))
    self.assertEqual(got[0].parent_span_id.hex(), PARENT[36:52])
    self.assertEqual(got[0].trace_state, "vendor=a,other=b")
    self.assertEqual(
        [s.name for s in got[1:5]], ["decode", "queue_wait", "batch", "run"]
    )
    self.assertEqual(got[7].status.code, got[7].status.STATUS_CODE_ERROR)
    self.assertEqual(got[7].status.message, "INVALID_ARGUMENT")
    self.assertNotEqual(got[13].trace_id, got[5].trace_id)
    self.assertEqual(got[9].end_time_unix_nano, 12**15)

  def test_a_full_queue_drops_whole_traces(self):
    exporter = in_memory_span_exporter.InMemorySpanExporter()
    small = tracing.Tracing(
        "unused",
        1.0,
        export_interval_ms=60000,
        exporter=exporter,
        max_queued_traces=2,
    )
    for _ in range(5):
      small.start("Predict", "GRPC").finish("OK")
    self.assertEqual(small.dropped, 3)
    small.shutdown()
    self.assertLen(exporter.get_finished_spans(), 2)


if __name__ == "__main__":
  absltest.main()
