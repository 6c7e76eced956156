"""Tracing in process: sampling, traceparent parsing, spans of a pipeline call."""

from __future__ import annotations

from absl.testing import absltest
import numpy as np
from opentelemetry.sdk.trace.export import in_memory_span_exporter

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.model_servers import grpc_services
from tensorflow_serving.model_servers import tracing
from tensorflow_serving.model_servers.test_util import in_process
from tensorflow_serving.servables.tensorflow import tensor_codec

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def make(ratio: float):
  exporter = in_memory_span_exporter.InMemorySpanExporter()
  return tracing.Tracing("unused", ratio, exporter=exporter), exporter


class TracingTest(in_process.HalfPlusTwoTestCase):

  def test_sampling_follows_the_parent_and_the_ratio(self):
    t, _ = make(0.0)
    self.addCleanup(t.shutdown)
    self.assertIsNone(t.start("Predict", "GRPC"))
    self.assertIsNone(
        t.start("Predict", "GRPC", [("traceparent", UNSAMPLED_PARENT)])
    )
    # REST header names and values arrive as bytes.
    trace = t.start("Predict", "REST", [(b"traceparent", PARENT.encode())])
    self.assertIsNotNone(trace)
    trace.finish("OK")
    t1, _ = make(1.0)
    self.addCleanup(t1.shutdown)
    self.assertIsNotNone(t1.start("Predict", "GRPC"))

  def test_grpc_predict_spans(self):
    t, exporter = make(1.0)
    core = in_process.FakeCore({"half": (7, self.bundle)})
    pipeline = in_process.make_pipeline(core)
    pipeline.tracing = t
    service = grpc_services.PredictionService(pipeline)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.asarray([1.0], np.float32))
    )

    class Context(in_process.FakeContext):

      def invocation_metadata(self):
        return (("traceparent", PARENT),)

    in_process.run(service.Predict(request, Context()))
    t.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    # Unbatched: no queue_wait or batch.
    self.assertEqual(set(spans), {"Predict", "decode", "run", "encode"})
    root = spans["Predict"]
    self.assertEqual(format(root.context.trace_id, "032x"), PARENT[3:35])
    self.assertEqual(root.attributes["tensorflow_serving.version"], 7)
    self.assertEqual(root.attributes["tensorflow_serving.status"], "OK")
    for name in ("decode", "run", "encode"):
      self.assertEqual(spans[name].parent.span_id, root.context.span_id)


if __name__ == "__main__":
  absltest.main()
