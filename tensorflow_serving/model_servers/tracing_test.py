"""Traces reach a real OTLP/HTTP receiver: spans, parents, attributes.

The test runs its own OTLP/HTTP trace receiver (the collector protocol:
POST /v1/traces with an ExportTraceServiceRequest, decoded with the
opentelemetry-proto messages) and the real binary with batching on and
--trace_sampling_ratio=0: calls that carry a sampled W3C traceparent (gRPC
metadata, REST header) are traced as children of the caller's span, a call
without one is not.
"""

from __future__ import annotations

import http.server
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request

from absl.testing import absltest
import numpy as np
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two

TIMEOUT_S = 60.0
GRPC_TRACE = "0af7651916cd43dd8448eb211c80319c"
REST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ERROR_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
PARENT_SPAN = "b7ad6b7169203331"
CHILDREN = {"decode", "queue_wait", "batch", "run", "encode"}


class Receiver(http.server.ThreadingHTTPServer):
  """An OTLP/HTTP trace receiver: keeps every span it is sent."""

  def __init__(self):
    super().__init__(("127.0.0.1", 0), _Handler)
    self.spans: list = []
    self.lock = threading.Lock()
    threading.Thread(target=self.serve_forever, daemon=True).start()

  @property
  def endpoint(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

  def spans_of(self, trace_id: str) -> list:
    with self.lock:
      return [s for s in self.spans if s.trace_id.hex() == trace_id]


class _Handler(http.server.BaseHTTPRequestHandler):

  def do_POST(self):  # pylint: disable=invalid-name
    body = self.rfile.read(int(self.headers["Content-Length"]))
    ok = (
        self.path == "/v1/traces"
        and self.headers["Content-Type"] == "application/x-protobuf"
    )
    if ok:
      request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
      with self.server.lock:  # type: ignore[attr-defined]
        for resource_spans in request.resource_spans:
          for scope_spans in resource_spans.scope_spans:
            self.server.spans.extend(scope_spans.spans)  # type: ignore[attr-defined]
    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
    self.send_response(200 if ok else 400)
    self.send_header("Content-Type", "application/x-protobuf")
    self.send_header("Content-Length", str(len(reply)))
    self.end_headers()
    self.wfile.write(reply)

  def log_message(self, *args):
    del args


def attributes(span) -> dict:
  out = {}
  for kv in span.attributes:
    value = kv.value
    out[kv.key] = getattr(value, value.WhichOneof("value"))
  return out


def traceparent(trace_id: str) -> str:
  return f"00-{trace_id}-{PARENT_SPAN}-01"


class TracingTest(absltest.TestCase):

  def test_traces_reach_an_otlp_receiver(self):
    receiver = Receiver()
    self.addCleanup(receiver.server_close)
    self.addCleanup(receiver.shutdown)
    base = os.path.join(
        tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR")), "half"
    )
    half_plus_two.export_half_plus_two_tf1(os.path.join(base, "1"))
    with model_server.running_server(
        [
            "--model_name=half",
            f"--model_base_path={base}",
            "--enable_batching",
            f"--otlp_traces_endpoint={receiver.endpoint}",
            "--trace_sampling_ratio=0",
        ]
    ) as server:
      request = predict_pb2.PredictRequest()
      request.model_spec.name = "half"
      request.inputs["x"].CopyFrom(
          tensor_codec.ndarray_to_tensor_proto(
              np.asarray([1.0, 2.0], np.float32)
          )
      )
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(
            request,
            timeout=30,
            metadata=(("traceparent", traceparent(GRPC_TRACE)),),
        )
        stub.Predict(request, timeout=30)  # No traceparent: not sampled.
      rest = urllib.request.Request(
          f"{server.rest_url}/v1/models/half:predict",
          data=json.dumps({"instances": [1.0]}).encode(),
          headers={"traceparent": traceparent(REST_TRACE)},
      )
      urllib.request.urlopen(rest, timeout=30).read()
      bad = urllib.request.Request(
          f"{server.rest_url}/v1/models/half:predict",
          data=json.dumps(
              {"signature_name": "nope", "instances": [1.0]}
          ).encode(),
          headers={"traceparent": traceparent(ERROR_TRACE)},
      )
      with self.assertRaises(urllib.error.HTTPError):
        urllib.request.urlopen(bad, timeout=30)

      deadline = time.monotonic() + TIMEOUT_S
      while time.monotonic() < deadline:
        if (
            len(receiver.spans_of(GRPC_TRACE)) == 1 + len(CHILDREN)
            and len(receiver.spans_of(REST_TRACE)) == 1 + len(CHILDREN)
            and receiver.spans_of(ERROR_TRACE)
        ):
          break
        time.sleep(0.2)

    for trace_id, entrypoint in ((GRPC_TRACE, "GRPC"), (REST_TRACE, "REST")):
      spans = receiver.spans_of(trace_id)
      (root,) = [s for s in spans if s.name == "Predict"]
      self.assertEqual(root.parent_span_id.hex(), PARENT_SPAN)
      self.assertEqual(root.kind, root.SPAN_KIND_SERVER)
      self.assertEqual(
          attributes(root),
          {
              "tensorflow_serving.api": "Predict",
              "tensorflow_serving.entrypoint": entrypoint,
              "tensorflow_serving.model": "half",
              "tensorflow_serving.version": 1,
              "tensorflow_serving.signature": "serving_default",
              "tensorflow_serving.status": "OK",
          },
      )
      children = {s.name: s for s in spans if s is not root}
      self.assertEqual(set(children), CHILDREN)
      for child in children.values():
        self.assertEqual(child.parent_span_id, root.span_id)
        self.assertGreaterEqual(child.start_time_unix_nano, 0)
        self.assertLessEqual(child.end_time_unix_nano, root.end_time_unix_nano)
      batch_size = attributes(children["batch"])[
          "tensorflow_serving.batch_size"
      ]
      self.assertGreaterEqual(batch_size, 1)
      self.assertLessEqual(
          children["queue_wait"].end_time_unix_nano,
          children["batch"].start_time_unix_nano + 1000,
      )
    (failed,) = [
        s for s in receiver.spans_of(ERROR_TRACE) if s.name == "Predict"
    ]
    self.assertEqual(
        attributes(failed)["tensorflow_serving.status"], "INVALID_ARGUMENT"
    )
    self.assertEqual(failed.status.code, failed.status.STATUS_CODE_ERROR)
    # Only the calls that carried a sampled traceparent were traced.
    with receiver.lock:
      self.assertEqual(
          {s.trace_id.hex() for s in receiver.spans},
          {GRPC_TRACE, REST_TRACE, ERROR_TRACE},
      )


if __name__ == "__main__":
  absltest.main()
