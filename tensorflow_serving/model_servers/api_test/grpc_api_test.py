"""gRPC PredictionService and ModelService.GetModelStatus, as clients see them.

One server (a --model_config_file with TF1, TF2, Keras, string/int and
non-finite models) is shared by every test; none of them changes its state.
"""

from __future__ import annotations

import unittest

from google.protobuf import text_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
TF2 = test_models.TF2
KERAS = test_models.KERAS
STRINGS = test_models.STRINGS
NONFINITE = test_models.NONFINITE
Code = grpc.StatusCode
State = util.ModelVersionStatus.State

HALF_SIGNATURES = {
    "serving_default",
    "two_outputs",
    "two_inputs",
    "regress_x_to_y",
    "classify_x_to_y",
}


def _config(repo: util.ModelRepo, labels: bool) -> str:
  half_extra = "model_version_policy { specific { versions: 1 versions: 2 } }"
  if labels:
    half_extra += (
        " version_labels { key: 'stable' value: 1 }"
        " version_labels { key: 'canary' value: 2 }"
    )
  return test_models.model_config_text(
      {
          HALF: repo.base_path(HALF, HALF, (1, 2, 3)),
          TF2: repo.base_path(TF2, TF2),
          KERAS: repo.base_path(KERAS, KERAS),
          STRINGS: repo.base_path(STRINGS, STRINGS),
          NONFINITE: repo.base_path(NONFINITE, NONFINITE),
      },
      extra={HALF: half_extra},
  )


class GrpcApiTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    config_path = cls.repo.write("models.config", _config(cls.repo, False))
    cls.server = cls.class_server(
        cls.repo, [f"--model_config_file={config_path}"]
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)
    # Labels may only name AVAILABLE versions, so they are added once the
    # versions loaded, as upstream documents.
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(_config(cls.repo, True), request.config)
    cls.clients.model.HandleReloadConfigRequest(request, timeout=60)

  def predict(self, *args, **kwargs):
    return self.clients.prediction.Predict(
        util.predict_request(*args, **kwargs), timeout=30
    )

  def outputs(self, response) -> dict[str, np.ndarray]:
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

  # --- Predict ------------------------------------------------------------

  def test_predict_default_signature_tf1(self):
    response = self.predict(HALF, {"x": np.array([1.0, 2.0, 5.0], np.float32)})
    self.assertEqual(response.model_spec.name, HALF)
    self.assertEqual(response.model_spec.version.value, 2)
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertEqual(list(response.outputs), ["y"])
    y = response.outputs["y"]
    self.assertEqual(y.dtype, types_pb2.DT_FLOAT)
    self.assertEqual([d.size for d in y.tensor_shape.dim], [3])
    # Without --enable_serialization_as_tensor_content: typed fields.
    self.assertEqual(y.tensor_content, b"")
    self.assertAllClose(y.float_val, [2.5, 3.0, 4.5])

  def test_predict_explicit_serving_default(self):
    response = self.predict(
        HALF,
        {"x": np.array([4.0], np.float32)},
        signature_name="serving_default",
    )
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertAllClose(self.outputs(response)["y"], [4.0])

  def test_predict_named_signature_two_outputs(self):
    response = self.predict(
        HALF, {"x": np.array([2.0], np.float32)}, signature_name="two_outputs"
    )
    self.assertEqual(response.model_spec.signature_name, "two_outputs")
    out = self.outputs(response)
    self.assertEqual(set(out), {"y", "y2"})
    self.assertAllClose(out["y"], [3.0])
    self.assertAllClose(out["y2"], [4.0])

  def test_predict_two_inputs(self):
    response = self.predict(
        HALF,
        {
            "x": np.array([2.0, 4.0], np.float32),
            "x2": np.array([0.0, 0.0], np.float32),
        },
        signature_name="two_inputs",
    )
    out = self.outputs(response)
    self.assertAllClose(out["y"], [3.0, 4.0])
    self.assertAllClose(out["y2"], [4.0, 5.0])

  def test_predict_output_filter(self):
    response = self.predict(
        HALF,
        {"x": np.array([2.0], np.float32)},
        signature_name="two_outputs",
        output_filter=["y2"],
    )
    self.assertEqual(list(response.outputs), ["y2"])
    self.assertAllClose(self.outputs(response)["y2"], [4.0])

  def test_predict_specific_version(self):
    for version in (1, 2):
      response = self.predict(
          HALF, {"x": np.array([0.0], np.float32)}, version=version
      )
      self.assertEqual(response.model_spec.version.value, version)
      self.assertAllClose(self.outputs(response)["y"], [2.0])

  def test_predict_version_label(self):
    for label, version in (("stable", 1), ("canary", 2)):
      response = self.predict(
          HALF, {"x": np.array([0.0], np.float32)}, version_label=label
      )
      # The effective spec: the resolved number, not the label.
      self.assertEqual(response.model_spec.version.value, version)
      self.assertEqual(
          response.model_spec.WhichOneof("version_choice"), "version"
      )
      self.assertEqual(response.model_spec.name, HALF)

  def test_predict_tf2_module(self):
    response = self.predict(TF2, {"x": np.array([1.0, -2.0], np.float32)})
    self.assertEqual(response.model_spec.name, TF2)
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertAllClose(self.outputs(response)["y"], [4.0, -5.0])

  def test_predict_tf2_two_inputs_two_outputs(self):
    response = self.predict(
        TF2,
        {
            "a": np.array([2.0, 3.0], np.float32),
            "b": np.array([5.0, -1.0], np.float32),
        },
        signature_name="combine",
    )
    out = self.outputs(response)
    self.assertAllClose(out["sum"], [7.0, 2.0])
    self.assertAllClose(out["product"], [10.0, -3.0])

  def test_predict_tf2_matrix_input(self):
    response = self.predict(
        TF2,
        {"matrix": np.array([[1, 2], [3, 4], [5, 6]], np.float32)},
        signature_name="row_sums",
    )
    self.assertAllClose(self.outputs(response)["sums"], [3.0, 7.0, 11.0])

  def test_predict_keras(self):
    features = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    response = self.predict(KERAS, {test_models.KERAS_INPUT: features})
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    out = self.outputs(response)
    self.assertEqual(list(out), ["output_0"])
    self.assertEqual(out["output_0"].shape, (2, 2))
    self.assertAllClose(out["output_0"], test_models.keras_expected(features))

  def test_predict_string_and_int_inputs(self):
    response = self.predict(
        STRINGS,
        {
            "text": np.array([b"abc", "h\u00e9llo".encode()], object),
            "count": np.array([1, 10], np.int64),
        },
    )
    out = self.outputs(response)
    self.assertEqual(response.outputs["total"].dtype, types_pb2.DT_INT64)
    self.assertEqual(out["total"].tolist(), [4, 15])
    self.assertEqual(response.outputs["upper"].dtype, types_pb2.DT_STRING)
    self.assertEqual(out["upper"].tolist(), [b"ABC", "H\u00e9LLO".encode()])

  def test_predict_int32(self):
    response = self.predict(
        STRINGS,
        {"n": np.array([3, -4], np.int32)},
        signature_name="int32_square",
    )
    self.assertEqual(response.outputs["square"].dtype, types_pb2.DT_INT32)
    self.assertEqual(self.outputs(response)["square"].tolist(), [9, 16])

  def test_predict_binary_strings(self):
    data = [b"\x00\xff\xfe", b""]
    response = self.predict(
        STRINGS, {"data": np.array(data, object)}, signature_name="echo_bytes"
    )
    out = self.outputs(response)
    self.assertEqual(out["data_bytes"].tolist(), data)
    self.assertEqual(out["size"].tolist(), [3, 0])

  def test_predict_nonfinite(self):
    x = np.array([0.0, -1.0, np.nan, np.inf, 1.0], np.float32)
    out = self.outputs(self.predict(NONFINITE, {"x": x}))
    np.testing.assert_array_equal(out["echo"], x)
    np.testing.assert_array_equal(
        out["log"], [-np.inf, np.nan, np.nan, np.inf, 0.0]
    )

  def test_predict_tensor_content_input(self):
    # Clients commonly send packed tensor_content (make_tensor_proto does for
    # numpy arrays); typed repeated fields must work as well.
    packed = tf.make_tensor_proto(np.array([2.0, 4.0], np.float32))
    self.assertNotEqual(packed.tensor_content, b"")
    typed = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, float_val=[2.0, 4.0]
    )
    typed.tensor_shape.dim.add(size=2)
    for proto in (packed, typed):
      response = self.predict(HALF, {"x": proto})
      self.assertAllClose(self.outputs(response)["y"], [3.0, 4.0])

  def test_predict_message_over_4mb(self):
    # Upstream lifts gRPC's 4 MB receive cap; clients raise their own.
    x = np.arange(1_500_000, dtype=np.float32)  # 6 MB each way.
    with grpc.insecure_channel(
        self.server.grpc_address,
        options=[("grpc.max_receive_message_length", -1)],
    ) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      response = stub.Predict(util.predict_request(HALF, {"x": x}), timeout=60)
    y = tf.make_ndarray(response.outputs["y"])
    self.assertEqual(y.shape, x.shape)
    self.assertAllClose(y[-3:], 0.5 * x[-3:] + 2)

  # --- Classify / Regress -------------------------------------------------

  def test_classify_example_list_tf1_scores_only(self):
    request = util.classification_request(
        HALF, "classify_x_to_y", [util.example(x=1.0), util.example(x=4.0)]
    )
    response = self.clients.prediction.Classify(request, timeout=30)
    self.assertEqual(response.model_spec.name, HALF)
    self.assertEqual(response.model_spec.version.value, 2)
    self.assertEqual(response.model_spec.signature_name, "classify_x_to_y")
    result = response.result.classifications
    self.assertEqual(len(result), 2)
    # No `classes` output: labels are empty.
    self.assertEqual([c.label for c in result[0].classes], [""])
    self.assertAllClose([c.score for c in result[0].classes], [2.5])
    self.assertAllClose([c.score for c in result[1].classes], [4.0])

  def test_classify_tf2_classes_and_scores(self):
    request = util.classification_request(
        TF2, "classify", [util.example(x=1.0), util.example(x=-2.0)]
    )
    response = self.clients.prediction.Classify(request, timeout=30)
    result = response.result.classifications
    self.assertEqual(
        [[c.label for c in r.classes] for r in result],
        [list(test_models.CLASS_LABELS)] * 2,
    )
    self.assertAllClose(
        [[c.score for c in r.classes] for r in result],
        [[-1.0, 3.0], [2.0, -6.0]],
    )

  def test_classify_example_list_with_context(self):
    # The context supplies `x` to every example.
    request = util.classification_request(
        TF2,
        "classify",
        [util.example(other=b"a"), util.example(other=b"b")],
        context=util.example(x=2.0),
    )
    response = self.clients.prediction.Classify(request, timeout=30)
    result = response.result.classifications
    self.assertEqual(len(result), 2)
    for r in result:
      self.assertAllClose([c.score for c in r.classes], [-2.0, 6.0])

  def test_regress_example_list(self):
    request = util.regression_request(
        HALF, "regress_x_to_y", [util.example(x=2.0), util.example(x=-4.0)]
    )
    response = self.clients.prediction.Regress(request, timeout=30)
    self.assertEqual(response.model_spec.name, HALF)
    self.assertEqual(response.model_spec.version.value, 2)
    self.assertEqual(response.model_spec.signature_name, "regress_x_to_y")
    self.assertAllClose(
        [r.value for r in response.result.regressions], [3.0, 0.0]
    )

  def test_regress_tf2_with_context(self):
    request = util.regression_request(
        TF2,
        "regress",
        [util.example(other=1), util.example(other=2)],
        context=util.example(x=1.5),
    )
    response = self.clients.prediction.Regress(request, timeout=30)
    self.assertAllClose(
        [r.value for r in response.result.regressions], [5.5, 5.5]
    )

  def test_regress_specific_version(self):
    request = util.regression_request(
        HALF, "regress_x_to_y", [util.example(x=0.0)]
    )
    request.model_spec.version.value = 1
    response = self.clients.prediction.Regress(request, timeout=30)
    self.assertEqual(response.model_spec.version.value, 1)

  def test_multi_inference(self):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ):
      task = request.tasks.add()
      task.model_spec.name = HALF
      task.model_spec.signature_name = signature
      task.method_name = method
    request.input.example_list.examples.extend(
        [util.example(x=2.0), util.example(x=6.0)]
    )
    response = self.clients.prediction.MultiInference(request, timeout=30)
    self.assertEqual(len(response.results), 2)
    classify, regress = response.results
    self.assertEqual(classify.model_spec.name, HALF)
    self.assertEqual(classify.model_spec.version.value, 2)
    self.assertEqual(classify.model_spec.signature_name, "classify_x_to_y")
    self.assertAllClose(
        [
            r.classes[0].score
            for r in classify.classification_result.classifications
        ],
        [3.0, 5.0],
    )
    self.assertEqual(regress.model_spec.signature_name, "regress_x_to_y")
    self.assertAllClose(
        [r.value for r in regress.regression_result.regressions], [3.0, 5.0]
    )

  def test_multi_inference_first_task_version_wins(self):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method, version in (
        ("regress_x_to_y", "tensorflow/serving/regress", 1),
        ("classify_x_to_y", "tensorflow/serving/classify", 2),
    ):
      task = request.tasks.add()
      task.model_spec.name = HALF
      task.model_spec.signature_name = signature
      task.model_spec.version.value = version
      task.method_name = method
    request.input.example_list.examples.add().CopyFrom(util.example(x=0.0))
    response = self.clients.prediction.MultiInference(request, timeout=30)
    self.assertEqual(
        [r.model_spec.version.value for r in response.results], [1, 1]
    )

  # --- GetModelMetadata ---------------------------------------------------

  def metadata(self, model: str, **spec) -> tuple[
      get_model_metadata_pb2.GetModelMetadataResponse,
      get_model_metadata_pb2.SignatureDefMap,
  ]:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if "version" in spec:
      request.model_spec.version.value = spec["version"]
    if "version_label" in spec:
      request.model_spec.version_label = spec["version_label"]
    request.metadata_field.append("signature_def")
    response = self.clients.prediction.GetModelMetadata(request, timeout=30)
    self.assertEqual(list(response.metadata), ["signature_def"])
    any_proto = response.metadata["signature_def"]
    self.assertTrue(
        any_proto.Is(get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR)
    )
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    self.assertTrue(any_proto.Unpack(sig_map))
    return response, sig_map

  def test_metadata_tf1(self):
    response, sig_map = self.metadata(HALF)
    self.assertEqual(response.model_spec.name, HALF)
    self.assertEqual(response.model_spec.version.value, 2)
    self.assertEqual(set(sig_map.signature_def), HALF_SIGNATURES)
    default = sig_map.signature_def["serving_default"]
    self.assertEqual(default.method_name, "tensorflow/serving/predict")
    self.assertEqual(default.inputs["x"].dtype, types_pb2.DT_FLOAT)
    self.assertEqual(default.inputs["x"].name, "x:0")
    self.assertEqual(
        [d.size for d in default.inputs["x"].tensor_shape.dim], [-1]
    )
    self.assertEqual(default.outputs["y"].name, "y:0")
    self.assertEqual(
        sig_map.signature_def["regress_x_to_y"].method_name,
        "tensorflow/serving/regress",
    )
    self.assertEqual(
        sig_map.signature_def["classify_x_to_y"].method_name,
        "tensorflow/serving/classify",
    )

  def test_metadata_version_and_label(self):
    response, _ = self.metadata(HALF, version=1)
    self.assertEqual(response.model_spec.version.value, 1)
    response, _ = self.metadata(HALF, version_label="stable")
    self.assertEqual(response.model_spec.version.value, 1)

  def test_metadata_tf2(self):
    _, sig_map = self.metadata(TF2)
    self.assertEqual(
        set(sig_map.signature_def),
        {
            "serving_default",
            "combine",
            "row_sums",
            "regress",
            "classify",
            "slow",
        },
    )
    combine = sig_map.signature_def["combine"]
    self.assertEqual(set(combine.inputs), {"a", "b"})
    self.assertEqual(set(combine.outputs), {"sum", "product"})
    self.assertEqual(
        [
            d.size
            for d in (
                sig_map.signature_def["row_sums"]
                .inputs["matrix"]
                .tensor_shape.dim
            )
        ],
        [-1, 2],
    )

  def test_metadata_keras(self):
    _, sig_map = self.metadata(KERAS)
    self.assertIn("serving_default", sig_map.signature_def)
    default = sig_map.signature_def["serving_default"]
    features = default.inputs[test_models.KERAS_INPUT]
    self.assertEqual(features.dtype, types_pb2.DT_FLOAT)
    self.assertEqual([d.size for d in features.tensor_shape.dim], [-1, 3])
    self.assertEqual(list(default.outputs), ["output_0"])

  def test_metadata_string_and_int_types(self):
    _, sig_map = self.metadata(STRINGS)
    default = sig_map.signature_def["serving_default"]
    self.assertEqual(default.inputs["text"].dtype, types_pb2.DT_STRING)
    self.assertEqual(default.inputs["count"].dtype, types_pb2.DT_INT64)
    self.assertEqual(default.outputs["total"].dtype, types_pb2.DT_INT64)

  def test_metadata_requires_a_field(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = HALF
    self.assertRpcError(
        lambda: self.clients.prediction.GetModelMetadata(request, timeout=30),
        Code.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field",
    )

  def test_metadata_unsupported_field(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = HALF
    request.metadata_field.extend(["signature_def", "graph_def"])
    self.assertRpcError(
        lambda: self.clients.prediction.GetModelMetadata(request, timeout=30),
        Code.INVALID_ARGUMENT,
        "Metadata field graph_def is not supported",
    )

  def test_metadata_unknown_model(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "nope"
    request.metadata_field.append("signature_def")
    self.assertRpcError(
        lambda: self.clients.prediction.GetModelMetadata(request, timeout=30),
        Code.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    )

  # --- GetModelStatus -----------------------------------------------------

  def test_model_status_all_versions(self):
    response = util.model_status(self.clients, HALF)
    # Version 3 is on disk but not in the `specific` policy.
    self.assertEqual([s.version for s in response.model_version_status], [2, 1])
    for s in response.model_version_status:
      self.assertEqual(s.state, State.AVAILABLE)
      self.assertEqual(s.status.error_code, 0)
      self.assertEqual(s.status.error_message, "")

  def test_model_status_one_version(self):
    response = util.model_status(self.clients, HALF, version=1)
    self.assertEqual(len(response.model_version_status), 1)
    self.assertEqual(response.model_version_status[0].version, 1)
    self.assertEqual(response.model_version_status[0].state, State.AVAILABLE)

  def test_model_status_ignores_label(self):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = HALF
    request.model_spec.version_label = "stable"
    response = self.clients.model.GetModelStatus(request, timeout=30)
    self.assertEqual([s.version for s in response.model_version_status], [2, 1])

  def test_model_status_each_model(self):
    for name in (TF2, KERAS, STRINGS, NONFINITE):
      self.assertEqual(
          util.version_states(self.clients, name), {1: State.AVAILABLE}
      )

  def test_model_status_unknown_model(self):
    self.assertRpcError(
        lambda: util.model_status(self.clients, "nope"),
        Code.NOT_FOUND,
        "Could not find any versions of model nope",
    )

  def test_model_status_unknown_version(self):
    self.assertRpcError(
        lambda: util.model_status(self.clients, HALF, 3),
        Code.NOT_FOUND,
        "Could not find version 3 of model half",
    )

  def test_model_status_empty_name(self):
    self.assertRpcError(
        lambda: util.model_status(self.clients, ""),
        Code.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
    )

  def test_reload_response_status_ok(self):
    # Re-applying the current config is a no-op that reports OK both ways.
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(_config(self.repo, True), request.config)
    response = self.clients.model.HandleReloadConfigRequest(request, timeout=60)
    self.assertEqual(response.status.error_code, 0)
    self.assertEqual(response.status.error_message, "")
    self.assertEqual(
        util.version_states(self.clients, HALF),
        {1: State.AVAILABLE, 2: State.AVAILABLE},
    )


if __name__ == "__main__":
  unittest.main()
