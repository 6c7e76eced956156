"""TF2 `tf.saved_model.save`, Keras 3 `Model.export` and tf_keras models.

The models are those of upstream's tensorflow_model_server_test.py
(test_tf_saved_model_save, ..._multiple_signatures,
test_sequential_keras_saved_model_save), plus the same y = 0.5 * x + 2 as a
Keras Dense layer exported both ways (`test_util/keras_models.py`).

Where upstream's docs give no example for a shape, the answer is what
Session::Run computes for it, since upstream feeds tensors to the session
without a static shape check ([predict]); each such claim is checked
against TensorFlow itself (session_oracle.run_ok / run_error) so the test
cannot assert an answer upstream would not give.

Sources: [test.py] model_servers/tensorflow_model_server_test.py,
[json] util/json_tensor.cc, [predict] servables/tensorflow/predict_util.cc,
[tf] TensorFlow's Session::Run answer, which upstream passes on.
"""

from __future__ import annotations

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.servables.tensorflow.test_util import keras_models
from tensorflow_serving.test_util import session_oracle

Code = fidelity.Code
FLOAT = types_pb2.DT_FLOAT
SCALE = "tf2_scale"  # y = 6 * x, x of unknown shape.
TWO = "tf2_two_signatures"  # y = 1.0 (serving_default), 2.0 (custom).
KERAS3 = "keras3"  # Keras 3 export: x [-1, 1] -> output_0 = 0.5 * x + 2.
TFK_ID = "tf_keras_identity"  # tf_keras: x [-1, 1] -> y = x.
TFK_DENSE = "tf_keras_dense"  # tf_keras: x [-1, 1] -> y = 0.5 * x + 2.
VERSION = 123


def _path(model: str) -> str:
  return f"/v1/models/{model}:predict"


class Tf2KerasTest(fidelity.FidelityTestCase):
  SUITE = "tf2_keras"

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dirs = fidelity.serve(
        cls,
        {
            SCALE: (keras_models.export_tf2_scale, VERSION),
            TWO: (keras_models.export_tf2_two_signatures, VERSION),
            KERAS3: (keras_models.export_keras3, VERSION),
            TFK_ID: (None, VERSION),
            TFK_DENSE: (None, VERSION),
        },
        export_many=lambda dirs: keras_models.export_legacy_keras(
            {"identity": dirs[TFK_ID], "dense": dirs[TFK_DENSE]}
        ),
    )

  def predict(self, model, inputs, signature="", output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, tensor in inputs.items():
      request.inputs[alias].CopyFrom(tensor)
    request.output_filter.extend(output_filter)
    return lambda: self.clients.prediction.Predict(request, timeout=30)

  def claim_ok(self, model, signature, x, alias="y"):
    """TensorFlow's own result for x (the claim upstream answers it)."""
    out = session_oracle.run_ok(
        self.dirs[model], signature, {"x": np.asarray(x, np.float32)}
    )
    return out[alias].tolist()

  def claim_error(self, model, x, signature="serving_default"):
    code, message = session_oracle.run_error(
        self.dirs[model], signature, {"x": np.asarray(x, np.float32)}
    )
    self.assertEqual(code, Code.INVALID_ARGUMENT.value[0])
    return message

  # --- tf.saved_model.save ------------------------------------------------

  def test_grpc_tf2_scale(self):
    def check(response):
      self.assertOutputs(response, {"y": (FLOAT, [1], [12.0])})
      self.assertModelSpec(response.model_spec, SCALE, "serving_default", 123)

    self.grpc(
        SCALE, "Predict x=float_val [2.0] shape [1]",
        self.predict(SCALE, {"x": fidelity.float_tensor([2.0])}),
        check=check, upstream="y [12.0]",
        source="[test.py] test_tf_saved_model_save",
    )  # fmt: skip

  def test_grpc_tf2_custom_signature(self):
    def check(response):
      self.assertOutputs(response, {"y": (FLOAT, [], 2.0)})
      self.assertModelSpec(
          response.model_spec, TWO, "custom_signature_key", 123
      )

    self.grpc(
        TWO, "Predict custom_signature_key x=[2.0] output_filter=[y]",
        self.predict(TWO, {"x": fidelity.float_tensor([2.0])},
                     signature=keras_models.CUSTOM_SIGNATURE_KEY,
                     output_filter=["y"]),
        check=check, upstream="y 2.0 (one float_val)",
        source="[test.py] test_tf_saved_model_save_multiple_signatures",
    )  # fmt: skip

  def test_grpc_tf2_default_signature(self):
    self.grpc(
        TWO, "Predict serving_default x=[2.0] output_filter=[y]",
        self.predict(TWO, {"x": fidelity.float_tensor([2.0])},
                     output_filter=["y"]),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [], 1.0)}),
        upstream="y 1.0 (one float_val)",
        source="[test.py] test_tf_saved_model_save_multiple_signatures",
    )  # fmt: skip

  def test_grpc_tf2_wrong_dtype(self):
    code, message = session_oracle.run_error(
        self.dirs[SCALE], "serving_default", {"x": np.array([2], np.int32)}
    )
    self.assertEqual(code, Code.INVALID_ARGUMENT.value[0])
    self.grpc(
        SCALE, "Predict x=DT_INT32 [2]",
        self.predict(SCALE, {"x": tf.make_tensor_proto(
            np.array([2], np.int32))}),
        code=Code.INVALID_ARGUMENT, prefix=message,
        upstream=f"INVALID_ARGUMENT: {message}", source="[tf]",
    )  # fmt: skip

  def test_rest_tf2_scale_row(self):
    self.assertEqual(self.claim_ok(SCALE, "serving_default", [1, 2]), [6, 12])
    self.rest(
        SCALE, "POST", _path(SCALE), {"instances": [1.0, 2.0]},
        doc={"predictions": [6.0, 12.0]},
        source="[test.py] test_tf_saved_model_save, row format",
    )  # fmt: skip

  def test_rest_tf2_scale_columnar_matrix(self):
    self.rest(
        SCALE, "POST", _path(SCALE), {"inputs": [[1.0, 2.0]]},
        doc={"outputs": [[6.0, 12.0]]},
        source="[json] columnar: any shape for an unknown-rank input",
    )  # fmt: skip

  def test_rest_tf2_scale_columnar_scalar(self):
    self.rest(
        SCALE, "POST", _path(SCALE), {"inputs": 2.0}, doc={"outputs": 12.0},
        source="[json] a plain value is a scalar tensor",
    )  # fmt: skip

  def test_rest_tf2_scalar_output_row(self):
    self.rest(
        TWO, "POST", _path(TWO), {"instances": [1.0]}, status=400,
        error="Tensor name: y has no shape information ",
        source="[json] MakeRowFormatJsonFromTensors: row format needs dim 0",
    )  # fmt: skip

  def test_rest_tf2_scalar_output_columnar(self):
    self.rest(
        TWO, "POST", _path(TWO),
        {"signature_name": keras_models.CUSTOM_SIGNATURE_KEY,
         "inputs": [1.0]},
        doc={"outputs": 2.0},
        source="[json] MakeColumnarFormatJsonFromTensors",
    )  # fmt: skip

  # --- Keras 3 ------------------------------------------------------------

  def test_grpc_keras3(self):
    self.grpc(
        KERAS3, "Predict x=[[2.0]] shape [1,1]",
        self.predict(KERAS3, {"x": fidelity.float_tensor([[2.0]])}),
        check=lambda r: self.assertOutputs(
            r, {"output_0": (FLOAT, [1, 1], [[3.0]])}),
        upstream="output_0 [[3.0]]",
        source="[test.py] keras test, with a Keras 3 export",
    )  # fmt: skip

  def test_rest_keras3_row(self):
    self.rest(
        KERAS3, "POST", _path(KERAS3), {"instances": [[1.0], [2.0]]},
        doc={"predictions": [[2.5], [3.0]]},
        source="[json] one output: predictions without its name",
    )  # fmt: skip

  def test_rest_keras3_named_instances(self):
    self.rest(
        KERAS3, "POST", _path(KERAS3),
        {"instances": [{"x": [1.0]}, {"x": [2.0]}]},
        doc={"predictions": [[2.5], [3.0]]},
        source="[json] row format, objects keyed by input name",
    )  # fmt: skip

  def test_rest_keras3_rank_the_ops_refuse(self):
    message = self.claim_error(KERAS3, [1.0, 2.0])
    self.rest(
        KERAS3, "POST", _path(KERAS3), {"instances": [1.0, 2.0]}, status=400,
        error_prefix=message, source="[tf] MatMul on a rank-1 input",
    )  # fmt: skip

  def test_rest_keras3_metadata(self):
    def check(doc):
      """serving_default {x [-1,1]} -> {output_0 [-1,1]}"""
      sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
      self.assertEqual(list(sig["inputs"]), ["x"])
      self.assertEqual(list(sig["outputs"]), ["output_0"])
      self.assertEqual(
          [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]],
          ["-1", "1"],
      )

    self.rest(
        KERAS3, "GET", f"/v1/models/{KERAS3}/metadata", check_doc=check,
        source="the SavedModel's SignatureDef, as GetModelMetadata prints it",
    )  # fmt: skip

  # --- tf_keras (TF_USE_LEGACY_KERAS=1) -----------------------------------

  def test_grpc_tf_keras_identity_batch_input(self):
    self.grpc(
        TFK_ID, "Predict x=float_val [2.0] shape [1,1]",
        self.predict(TFK_ID, {"x": fidelity.float_tensor([[2.0]])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1, 1], [[2.0]])}),
        upstream="y [[2.0]]",
        source="[test.py] test_sequential_keras_saved_model_save",
    )  # fmt: skip

  def test_grpc_tf_keras_identity_rank1(self):
    self.assertEqual(self.claim_ok(TFK_ID, "serving_default", [2.0]), [2.0])
    self.grpc(
        TFK_ID, "Predict x=float_val [2.0] shape [1]",
        self.predict(TFK_ID, {"x": fidelity.float_tensor([2.0])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1], [2.0])}),
        upstream="y [2.0] (identity accepts any rank)", source="[predict] + [tf]",
    )  # fmt: skip

  def test_rest_tf_keras_dense_row(self):
    self.rest(
        TFK_DENSE, "POST", _path(TFK_DENSE), {"instances": [[1.0], [2.0]]},
        doc={"predictions": [[2.5], [3.0]]},
        source="[json] row format",
    )  # fmt: skip

  def test_rest_tf_keras_dense_columnar(self):
    self.rest(
        TFK_DENSE, "POST", _path(TFK_DENSE), {"inputs": {"x": [[4.0]]}},
        doc={"outputs": [[4.0]]},
        source="[json] columnar format, named input",
    )  # fmt: skip

  def test_rest_tf_keras_dense_rank_the_ops_refuse(self):
    message = self.claim_error(TFK_DENSE, [1.0, 2.0])
    self.rest(
        TFK_DENSE, "POST", _path(TFK_DENSE), {"instances": [1.0, 2.0]},
        status=400, error_prefix=message,
        source="[tf] MatMul on a rank-1 input",
    )  # fmt: skip

  def test_rest_tf_keras_identity_rank1(self):
    self.assertEqual(
        self.claim_ok(TFK_ID, "serving_default", [1.0, 2.0]), [1.0, 2.0]
    )
    self.rest(
        TFK_ID, "POST", _path(TFK_ID), {"instances": [1.0, 2.0]},
        doc={"predictions": [1.0, 2.0]}, source="[predict] + [tf]",
    )  # fmt: skip


if __name__ == "__main__":
  absltest.main()
