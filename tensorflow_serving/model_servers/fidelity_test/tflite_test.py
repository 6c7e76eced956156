"""TF Lite models as upstream's test data has them, with --prefer_tflite_model.

Rebuilt in-process (`test_util/tflite_models.py`): half_plus_two converted
from a TF1 session with its input fixed at [1, 1]; one without SignatureDefs
(input tensor `x`) and one whose SignatureDef (x -> tflite_input:0, y -> y:0)
sits in the `signature_defs_metadata` entry, where TF Lite's tools/signature
library writes it and upstream's TfLiteSession reads it.

Sources: [test.py] model_servers/tensorflow_model_server_test.py,
[tflite] servables/tensorflow/tflite_session.cc (SignatureDefs from
GetSignatureDefMap, tensor names fixed with FixTfLiteTensorName, input
resized to the request's dims, a serving_default made from tensor names
when the model has none), [json] util/json_tensor.cc.
"""

from __future__ import annotations

from absl.testing import absltest
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.servables.tensorflow.test_util import tflite_models

FLOAT = types_pb2.DT_FLOAT
PLAIN = "tflite"
SIGDEF = "tflite_with_sigdef"
VERSION = 123


class TfLiteTest(fidelity.FidelityTestCase):
  SUITE = "tflite"

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    fidelity.serve(
        cls,
        {
            PLAIN: (
                tflite_models.export_upstream_half_plus_two_tflite,
                VERSION,
            ),
            SIGDEF: (
                lambda d: tflite_models.export_upstream_half_plus_two_tflite(
                    d, signature_def=True
                ),
                VERSION,
            ),
        },
        ["--prefer_tflite_model=true"],
    )

  def predict(self, model, inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for alias, tensor in inputs.items():
      request.inputs[alias].CopyFrom(tensor)
    return lambda: self.clients.prediction.Predict(request, timeout=30)

  def test_grpc_predict(self):
    self.grpc(
        PLAIN, "Predict x=float_val [2.0] shape [1]",
        self.predict(PLAIN, {"x": fidelity.float_tensor([2.0])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1], [3.0])}),
        upstream="y [3.0]", source="[test.py] testPredictOnTfLite",
    )  # fmt: skip

  def test_grpc_predict_with_signature_def(self):
    self.grpc(
        SIGDEF, "Predict x=float_val [2.0] shape [1]",
        self.predict(SIGDEF, {"x": fidelity.float_tensor([2.0])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1], [3.0])}),
        upstream="y [3.0]",
        source="[test.py] testPredictWithSignatureDefOnTfLite",
    )  # fmt: skip

  def test_grpc_predict_signature_shape(self):
    self.grpc(
        SIGDEF, "Predict x=[[2.0]] shape [1,1]",
        self.predict(SIGDEF, {"x": fidelity.float_tensor([[2.0]])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1, 1], [[3.0]])}),
        upstream="y [[3.0]]", source="[tflite]",
    )  # fmt: skip

  def test_rest_row_resized(self):
    self.rest(
        PLAIN, "POST", f"/v1/models/{PLAIN}:predict",
        {"instances": [2.0, 3.0, 4.0]},
        doc={"predictions": [3.0, 3.5, 4.0]},
        source="[tflite] ResizeInputTensor to the request's dims",
    )  # fmt: skip

  def test_rest_row_with_signature_def(self):
    self.rest(
        SIGDEF, "POST", f"/v1/models/{SIGDEF}:predict",
        {"instances": [[2.0], [4.0]]},
        doc={"predictions": [[3.0], [4.0]]},
        source="[tflite] inputs by SignatureDef key",
    )  # fmt: skip

  def test_rest_metadata_with_signature_def(self):
    def check(doc):
      """serving_default {x: tflite_input} -> {y: y}, method predict"""
      sigs = doc["metadata"]["signature_def"]["signature_def"]
      self.assertEqual(set(sigs), {"serving_default"})
      sig = sigs["serving_default"]
      self.assertEqual(list(sig["inputs"]), ["x"])
      self.assertEqual(list(sig["outputs"]), ["y"])
      self.assertEqual(sig["inputs"]["x"]["name"], "tflite_input")
      self.assertEqual(sig["outputs"]["y"]["name"], "y")
      self.assertEqual(sig["method_name"], "tensorflow/serving/predict")

    self.rest(
        SIGDEF, "GET", f"/v1/models/{SIGDEF}/metadata", check_doc=check,
        source="[tflite] Create: SignatureDefs from metadata, names fixed",
    )  # fmt: skip

  def test_rest_metadata_without_signature_def(self):
    def check(doc):
      """serving_default made from tensor names: {x} -> {y}"""
      sigs = doc["metadata"]["signature_def"]["signature_def"]
      self.assertEqual(set(sigs), {"serving_default"})
      self.assertEqual(list(sigs["serving_default"]["inputs"]), ["x"])
      self.assertEqual(list(sigs["serving_default"]["outputs"]), ["y"])

    self.rest(
        PLAIN, "GET", f"/v1/models/{PLAIN}/metadata", check_doc=check,
        source="[tflite] Create: 'No signature def found ... Generating one'",
    )  # fmt: skip


if __name__ == "__main__":
  absltest.main()
