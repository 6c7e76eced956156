"""half_plus_two and half_plus_three, asked every way upstream's docs ask.

The models are upstream's getting-started models rebuilt in-process
(`test_util/half_plus_two.py`): x float [-1, 1] fed by tensor name, y =
0.5 * x + 2 (half_plus_three: + 3). One server serves both through a model
config file, as upstream's good_model_config.txt does, with a UNIX socket
as upstream's tensorflow_model_server_test.py starts it.

Sources cited at each case (upstream's repository):
  [test.py]    model_servers/tensorflow_model_server_test.py
  [handler]    model_servers/http_rest_api_handler_test.cc
  [api_rest]   g3doc/api_rest.md
  [json]       util/json_tensor.cc
  [predict]    servables/tensorflow/predict_util.cc
  [impl_test]  model_servers/predict_impl_test.cc
  [regressor]  servables/tensorflow/regressor.cc
  [metadata]   servables/tensorflow/testdata/
               saved_model_half_plus_two_2_versions_metadata.json
  [tf]         TensorFlow's Session::Run message, which upstream returns
               unchanged (computed by session_oracle.py)
"""

from __future__ import annotations

import os
import shutil
import tempfile

from absl.testing import absltest
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import session_oracle

Code = fidelity.Code
FLOAT = types_pb2.DT_FLOAT
H2 = "half_plus_two"
H3 = "half_plus_three"
VERSION = 123
P2 = f"/v1/models/{H2}"
P3 = f"/v1/models/{H3}"

_STATUS_OK = {
    "model_version_status": [
        {
            "version": "123",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]
}


def _dims(*sizes: int) -> dict:
  return {
      "dim": [{"size": str(s), "name": ""} for s in sizes],
      "unknown_rank": False,
  }


# [metadata]: serving_default as upstream's GetModelMetadata prints it.
_SERVING_DEFAULT_METADATA = {
    "inputs": {
        "x": {"dtype": "DT_FLOAT", "tensor_shape": _dims(-1, 1), "name": "x:0"}
    },
    "outputs": {
        "y": {"dtype": "DT_FLOAT", "tensor_shape": _dims(-1, 1), "name": "y:0"}
    },
    "method_name": "tensorflow/serving/predict",
    "defaults": {},
}


class HalfPlusTwoTest(fidelity.FidelityTestCase):
  SUITE = "half_plus_two"
  FLAGS: tuple[str, ...] = ()
  # With --enable_batching upstream refuses scalars (batching_util.cc).
  BATCHING = False

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # AF_UNIX paths are short (108 bytes): not under Bazel's TEST_TMPDIR.
    socket_dir = tempfile.mkdtemp(prefix="tfs-", dir="/tmp")
    cls.addClassCleanup(shutil.rmtree, socket_dir, ignore_errors=True)
    cls.socket = os.path.join(socket_dir, "grpc.sock")
    dirs = fidelity.serve(
        cls,
        {
            H2: (half_plus_two.export_upstream_half_plus_two, VERSION),
            H3: (half_plus_two.export_upstream_half_plus_three, VERSION),
        },
        [f"--grpc_socket_path={cls.socket}", *cls.FLAGS],
    )
    cls.h2_dir = dirs[H2]

  def predict(self, inputs, model=H2, signature="", output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for alias, tensor in inputs.items():
      request.inputs[alias].CopyFrom(tensor)
    request.output_filter.extend(output_filter)
    return lambda: self.clients.prediction.Predict(request, timeout=30)

  def scalar_refusal(self) -> dict:
    """Upstream's answer to a rank-0 input: a value, or with batching on
    INVALID_ARGUMENT (batching_util.cc ComputeTensorBatchSize)."""
    if self.BATCHING:
      return {
          "code": Code.INVALID_ARGUMENT,
          "message": (
              "Batching Run() input tensors must have at least one dimension"
          ),
      }
    return {}

  # --- REST Predict -----------------------------------------------------

  def test_rest_row_rank1(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"instances": [2.0, 3.0, 4.0]},
        doc={"predictions": [3.0, 3.5, 4.0]},
        source="[test.py] testPredictREST",
    )  # fmt: skip

  def test_rest_columnar_rank1(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"inputs": [2.0, 3.0, 4.0]},
        doc={"outputs": [3.0, 3.5, 4.0]},
        source="[test.py] testPredictColumnarREST",
    )  # fmt: skip

  def test_rest_row_rank2_wider_than_signature(self):
    self.rest(
        H2, "POST", f"{P2}:predict",
        {"instances": [[1.0, 2.0], [3.0, 4.0]]},
        doc={"predictions": [[2.5, 3.0], [3.5, 4.0]]},
        source="[handler] Predict",
    )  # fmt: skip

  def test_rest_row_signature_shape(self):
    self.rest(
        H2, "POST", f"{P2}:predict",
        {"instances": [[1.0], [2.0], [5.0]]},
        doc={"predictions": [[2.5], [3.0], [4.5]]},
        source="[api_rest] row format, one [1] tensor per instance",
    )  # fmt: skip

  def test_rest_version_and_signature_name(self):
    self.rest(
        H2, "POST", f"{P2}/versions/{VERSION}:predict",
        {"signature_name": "serving_default", "instances": [3.0, 4.0]},
        doc={"predictions": [3.5, 4.0]},
        source="[handler] Predict, explicit version and signature_name",
    )  # fmt: skip

  def test_rest_columnar_with_signature_name(self):
    self.rest(
        H2, "POST", f"{P2}/versions/{VERSION}:predict",
        {"signature_name": "serving_default", "inputs": [3.0, 4.0]},
        doc={"outputs": [3.5, 4.0]},
        source="[handler] Predict, columnar inputs",
    )  # fmt: skip

  def test_rest_named_instances(self):
    self.rest(
        H2, "POST", f"{P2}:predict",
        {"instances": [{"x": 1.0}, {"x": 2.0}]},
        doc={"predictions": [2.5, 3.0]},
        source="[api_rest] row format, list of objects with named inputs",
    )  # fmt: skip

  def test_rest_named_columnar(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"inputs": {"x": [[1.0], [2.0]]}},
        doc={"outputs": [[2.5], [3.0]]},
        source="[api_rest] columnar format, map of input name to tensor",
    )  # fmt: skip

  def test_rest_columnar_scalar(self):
    if self.BATCHING:
      self.rest(
          H2, "POST", f"{P2}:predict", {"inputs": 2.0}, status=400,
          error=self.scalar_refusal()["message"],
          source="[json] a plain value is a scalar; batching_util.cc",
      )  # fmt: skip
      return
    self.rest(
        H2, "POST", f"{P2}:predict", {"inputs": 2.0},
        doc={"outputs": 3.0},
        source="[json] FillTensorMapFromInputsMap: a plain value is a scalar",
    )  # fmt: skip

  def test_rest_integers_for_float_input(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"instances": [1, 2]},
        doc={"predictions": [2.5, 3.0]},
        source="[json] AddValueToTensor: DT_FLOAT takes any JSON number",
    )  # fmt: skip

  def test_rest_nan_and_infinity(self):
    self.rest(
        H2, "POST", f"{P2}:predict", '{"instances": [NaN, Infinity, -Infinity]}',
        doc={"predictions": [float("nan"), float("inf"), float("-inf")]},
        source="[api_rest] JSON conformance: NaN, Infinity tokens",
    )  # fmt: skip

  def test_rest_predict_on_regression_signature(self):
    if self.BATCHING:
      self.rest(
          H2, "POST", f"{P2}:predict",
          {"signature_name": "regress_x2_to_y3", "inputs": 2.0}, status=400,
          error=self.scalar_refusal()["message"],
          source="[impl_test] with batching: batching_util.cc",
      )  # fmt: skip
      return
    self.rest(
        H2, "POST", f"{P2}:predict",
        {"signature_name": "regress_x2_to_y3", "inputs": 2.0},
        doc={"outputs": 4.0},
        source="[impl_test] PredictionWithNamedRegressionSignature",
    )  # fmt: skip

  def test_rest_instances_not_a_list(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"instances": 2.0}, status=400,
        error_contains=["Excepting 'instances' to be an list/array"],
        source="[json] FillPredictRequestFromJson",
    )  # fmt: skip

  def test_rest_string_for_float_input(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"instances": ["x", "y"]}, status=400,
        error_contains=["not of expected type: float"],
        source="[handler] PredictRequestErrors, incorrect type",
    )  # fmt: skip

  def test_rest_b64_for_float_input(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"instances": [{"b64": "AAAA"}]},
        status=400, error_contains=["is not of expected type: float"],
        source="[json] FillTensorProto: an object is base64 only for strings",
    )  # fmt: skip

  def test_rest_empty_body(self):
    self.rest(
        H2, "POST", f"{P2}:predict", "", status=400,
        error_contains=["JSON Parse error: The document is empty"],
        source="[handler] PredictRequestErrors, empty document",
    )  # fmt: skip

  def test_rest_bad_json(self):
    self.rest(
        H2, "POST", f"{P2}:predict", "instances = [1, 2]", status=400,
        error_contains=["JSON Parse error: Invalid value"],
        source="[handler] PredictRequestErrors, badly formatted JSON",
    )  # fmt: skip

  def test_rest_signature_name_not_a_string(self):
    self.rest(
        H2, "POST", f"{P2}:predict", {"signature_name": 100}, status=400,
        error_contains=["'signature_name' key must be a string value."],
        source="[handler] PredictRequestErrors, signature_name type",
    )  # fmt: skip

  def test_rest_unknown_model(self):
    self.rest(
        "half", "POST", "/v1/models/half:predict", {"instances": [1.0, 5.0]},
        status=404, error="Servable not found for request: Latest(half)",
        source="[api_rest] Example, incorrect request URL",
    )  # fmt: skip

  # --- REST Classify / Regress ------------------------------------------

  def test_rest_regress(self):
    self.rest(
        H2, "POST", f"{P2}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
        doc={"results": [42.0]},
        source="[handler] Regress",
    )  # fmt: skip

  def test_rest_classify(self):
    self.rest(
        H2, "POST", f"{P2}:classify",
        {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]},
        doc={"results": [[["", 12.0]]]},
        source="[handler] Classify",
    )  # fmt: skip

  def test_rest_regress_with_context(self):
    self.rest(
        H2, "POST", f"{P2}:regress",
        {"signature_name": "regress_x_to_y", "context": {"x": 4.0},
         "examples": [{"x2": 1.0}, {"x2": 2.0}]},
        doc={"results": [4.0, 4.0]},
        source="[api_rest] context: features shared by all examples",
    )  # fmt: skip

  def test_rest_classify_with_b64_feature(self):
    self.rest(
        H2, "POST", f"{P2}:classify",
        {"signature_name": "classify_x_to_y",
         "examples": [{"x": 2.0, "image": {"b64": "aW1hZ2UgYnl0ZXM="}}]},
        doc={"results": [[["", 3.0]]]},
        source="[api_rest] Encoding binary values (unparsed feature)",
    )  # fmt: skip

  def test_rest_regress_integer_feature(self):
    example = util.example(x=2)  # JSON 2 is an int64 feature ([json]).
    _, message = session_oracle.run_error(
        self.h2_dir,
        "regress_x_to_y",
        {"inputs": session_oracle.serialized_examples(example)},
    )
    self.rest(
        H2, "POST", f"{P2}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]},
        status=400, error_prefix=message,
        source="[json] AddValueToFeature (ints are int64) + [tf]",
    )  # fmt: skip

  def test_rest_regress_without_signature_name(self):
    self.rest(
        H2, "POST", f"{P2}:regress", {"examples": [{"x": 1.0}]}, status=400,
        error_prefix="No regression inputs found in SignatureDef: ",
        source="[regressor] PreProcessRegression on the predict signature",
    )  # fmt: skip

  # --- REST status and metadata -------------------------------------------

  def test_rest_status(self):
    self.rest(
        H2, "GET", P2, doc=_STATUS_OK,
        source="[test.py] testGetStatusREST, [api_rest]",
    )  # fmt: skip

  def test_rest_metadata(self):
    def check(doc):
      """model_spec {name, signature_name "", version "123"}, the five
      signatures, serving_default x/y [-1,1]"""
      self.assertEqual(
          doc["model_spec"],
          {"name": H2, "signature_name": "", "version": "123"},
      )
      sigs = doc["metadata"]["signature_def"]["signature_def"]
      self.assertEqual(
          set(sigs), set(half_plus_two.UPSTREAM_HALF_PLUS_TWO_SIGNATURES)
      )
      self.assertTrue(
          fidelity.same_json(
              sigs["serving_default"], _SERVING_DEFAULT_METADATA
          ),
          msg=sigs["serving_default"],
      )

    self.rest(
        H2, "GET", f"{P2}/metadata", check_doc=check,
        source="[metadata], [test.py] testGetModelMetadataREST",
    )  # fmt: skip

  def test_rest_half_plus_three_predict(self):
    self.rest(
        H3, "POST", f"{P3}:predict", {"instances": [1.0, 2.0, 5.0]},
        doc={"predictions": [3.5, 4.0, 5.5]},
        source="[api_rest] Example, predict",
    )  # fmt: skip

  def test_rest_half_plus_three_regress(self):
    self.rest(
        H3, "POST", f"{P3}:regress",
        {"signature_name": "tensorflow/serving/regress",
         "examples": [{"x": 1.0}, {"x": 2.0}]},
        doc={"results": [3.5, 4.0]},
        source="[api_rest] Example, regress",
    )  # fmt: skip

  # --- gRPC Predict -----------------------------------------------------

  def _verify_predict(self, output_filter):
    def check(response):
      self.assertOutputs(response, {"y": (FLOAT, [1], [3.0])})
      self.assertModelSpec(response.model_spec, H2, "serving_default", 123)

    self.grpc(
        H2, f"Predict x=float_val [2.0] shape [1] output_filter={output_filter}",
        self.predict({"x": fidelity.float_tensor([2.0])},
                     output_filter=output_filter),
        check=check,
        upstream="y float_val [3.0]; model_spec serving_default v123",
        source="[test.py] VerifyPredictRequest",
    )  # fmt: skip

  def test_grpc_predict_rank1(self):
    self._verify_predict(["y"])

  def test_grpc_predict_rank1_no_filter(self):
    self._verify_predict([])

  def test_grpc_predict_batch_input(self):
    self.grpc(
        H2, "Predict x=float_val [2.0] shape [1,1]",
        self.predict({"x": fidelity.float_tensor([[2.0]])}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1, 1], [[3.0]])}),
        upstream="y [1,1] [[3.0]]",
        source="[test.py] VerifyPredictRequest(batch_input=True)",
    )  # fmt: skip

  def test_grpc_predict_tensor_content(self):
    self.grpc(
        H2, "Predict x=tensor_content [[1],[2]]",
        self.predict({"x": fidelity.packed_float_tensor([[1.0], [2.0]])}),
        check=lambda r: self.assertOutputs(
            r, {"y": (FLOAT, [2, 1], [[2.5], [3.0]])}),
        upstream="y float_val [2.5, 3.0] shape [2,1] (typed field)",
        source="[predict] kAsProtoField unless tensor_content is asked for",
    )  # fmt: skip

  def test_grpc_predict_rank_the_ops_accept(self):
    self.grpc(
        H2, "Predict x shape [2,3]",
        self.predict({"x": fidelity.float_tensor(np.ones([2, 3]))}),
        check=lambda r: self.assertOutputs(
            r, {"y": (FLOAT, [2, 3], np.full([2, 3], 2.5))}),
        upstream="y [2,3] all 2.5 (no static shape check)",
        source="[predict] RunPredict feeds the tensor to Session::Run",
    )  # fmt: skip

  def test_grpc_predict_scalar(self):
    self.grpc(
        H2, "Predict x=float_val [2.0], no shape (scalar)",
        self.predict({"x": fidelity.float_tensor(2.0)}),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [], 3.0)}),
        upstream="y scalar 3.0" if not self.BATCHING else (
            "INVALID_ARGUMENT: Batching Run() input tensors must have at "
            "least one dimension"),
        source="[impl_test], batching_util.cc",
        **self.scalar_refusal(),
    )  # fmt: skip

  def test_grpc_predict_regression_signature(self):
    def check(response):
      self.assertOutputs(response, {"outputs": (FLOAT, [], 4.0)})
      self.assertModelSpec(response.model_spec, H2, "regress_x2_to_y3", 123)

    self.grpc(
        H2, "Predict regress_x2_to_y3 inputs=scalar 2.0",
        self.predict({"inputs": fidelity.float_tensor(2.0)},
                     signature="regress_x2_to_y3"),
        check=check,
        upstream="outputs scalar 4.0" if not self.BATCHING else (
            "INVALID_ARGUMENT: Batching Run() input tensors must have at "
            "least one dimension"),
        source="[impl_test] PredictionWithNamedRegressionSignature",
        **self.scalar_refusal(),
    )  # fmt: skip

  def test_grpc_predict_wrong_dtype(self):
    text = tf.make_tensor_proto(np.array([b"a"], dtype=object))
    code, message = session_oracle.run_error(
        self.h2_dir, "serving_default", {"x": np.array([b"a"], dtype=object)}
    )
    self.assertEqual(code, Code.INVALID_ARGUMENT.value[0])
    self.grpc(
        H2, "Predict x=DT_STRING ['a']", self.predict({"x": text}),
        code=Code.INVALID_ARGUMENT, prefix=message,
        upstream=f"INVALID_ARGUMENT: {message}",
        source="[tf] via [predict] RunPredict",
    )  # fmt: skip

  def test_grpc_predict_extra_input(self):
    message = (
        "input size does not match signature: 2!=1 len({x,z}) != len({x})."
        " Sent extra: {z}. Missing but required: {}."
    )
    self.grpc(
        H2, "Predict inputs {x, z}",
        self.predict({"x": fidelity.float_tensor([1.0]),
                      "z": fidelity.float_tensor([1.0])}),
        code=Code.INVALID_ARGUMENT, message=message,
        upstream=f"INVALID_ARGUMENT: {message}",
        source="[predict] VerifyRequestInputsSize",
    )  # fmt: skip

  def test_grpc_predict_unknown_output_filter(self):
    message = (
        "output tensor alias not found in signature: w Outputs expected to"
        " be in the set {y}."
    )
    self.grpc(
        H2, "Predict output_filter [w]",
        self.predict({"x": fidelity.float_tensor([1.0])}, output_filter=["w"]),
        code=Code.INVALID_ARGUMENT, message=message,
        upstream=f"INVALID_ARGUMENT: {message}",
        source="[predict] PreProcessPrediction",
    )  # fmt: skip

  def test_grpc_predict_unknown_signature(self):
    message = 'Serving signature key "nope" not found.'
    self.grpc(
        H2, "Predict signature_name nope",
        self.predict({"x": fidelity.float_tensor([1.0])}, signature="nope"),
        code=Code.FAILED_PRECONDITION, message=message,
        upstream=f"FAILED_PRECONDITION: {message}",
        source="[predict] RunPredict",
    )  # fmt: skip

  def test_grpc_predict_unknown_model(self):
    message = "Servable not found for request: Latest(nope)"
    self.grpc(
        "nope", "Predict model nope",
        self.predict({"x": fidelity.float_tensor([1.0])}, model="nope"),
        code=Code.NOT_FOUND, message=message,
        upstream=f"NOT_FOUND: {message}",
        source="[test.py] WaitForServerReady ('Servable' in details)",
    )  # fmt: skip

  def test_grpc_predict_half_plus_three(self):
    self.grpc(
        H3, "Predict x=[2.0] shape [1] output_filter=[y]",
        self.predict({"x": fidelity.float_tensor([2.0])}, model=H3,
                     output_filter=["y"]),
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1], [4.0])}),
        upstream="y [4.0]",
        source="[test.py] testGoodModelConfig",
    )  # fmt: skip

  def test_grpc_predict_unix_socket(self):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = H2
    request.inputs["x"].CopyFrom(fidelity.float_tensor([2.0]))

    def call():
      with grpc.insecure_channel(f"unix:{self.socket}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=30)

    self.grpc(
        H2, "Predict over --grpc_socket_path, x=[2.0] shape [1]", call,
        check=lambda r: self.assertOutputs(r, {"y": (FLOAT, [1], [3.0])}),
        upstream="y [3.0]",
        source="[test.py] testPredictUDS",
    )  # fmt: skip

  # --- gRPC Classify / Regress / MultiInference / status ----------------

  def test_grpc_classify(self):
    request = util.classification_request(
        H2, "classify_x_to_y", [util.example(x=2.0)]
    )

    def check(response):
      classes = response.result.classifications
      self.assertEqual(len(classes), 1)
      self.assertEqual(len(classes[0].classes), 1)
      self.assertEqual(classes[0].classes[0].score, 3.0)
      self.assertEqual(classes[0].classes[0].label, "")
      self.assertModelSpec(response.model_spec, H2, "classify_x_to_y", 123)

    self.grpc(
        H2, "Classify classify_x_to_y x=2.0",
        lambda: self.clients.prediction.Classify(request, timeout=30),
        check=check, upstream='one class, label "", score 3.0',
        source="[test.py] testClassify",
    )  # fmt: skip

  def test_grpc_regress(self):
    request = util.regression_request(
        H2, "regress_x_to_y", [util.example(x=2.0)]
    )

    def check(response):
      self.assertEqual([r.value for r in response.result.regressions], [3.0])
      self.assertModelSpec(response.model_spec, H2, "regress_x_to_y", 123)

    self.grpc(
        H2, "Regress regress_x_to_y x=2.0",
        lambda: self.clients.prediction.Regress(request, timeout=30),
        check=check, upstream="regressions [3.0]",
        source="[test.py] testRegress",
    )  # fmt: skip

  def test_grpc_regress_with_context(self):
    request = util.regression_request(
        H2, "regress_x_to_y2", [util.example(x2=1.0), util.example(x2=2.0)],
        context=util.example(x=4.0),
    )  # fmt: skip
    self.grpc(
        H2, "Regress regress_x_to_y2 context x=4.0, examples x2=1.0, 2.0",
        lambda: self.clients.prediction.Regress(request, timeout=30),
        check=lambda r: self.assertEqual(
            [x.value for x in r.result.regressions], [5.0, 5.0]),
        upstream="regressions [5.0, 5.0] (y2 = 0.5 * 4 + 3)",
        source="[api_rest] context, input.proto ExampleListWithContext",
    )  # fmt: skip

  def test_grpc_multi_inference(self):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
      task = request.tasks.add()
      task.model_spec.name = H2
      task.model_spec.signature_name = signature
      task.method_name = method
    request.input.example_list.examples.add().CopyFrom(util.example(x=2.0))

    def check(response):
      self.assertEqual(len(response.results), 2)
      self.assertEqual(
          response.results[0].regression_result.regressions[0].value, 3.0
      )
      self.assertEqual(
          response.results[1]
          .classification_result.classifications[0]
          .classes[0]
          .score,
          3.0,
      )
      for i, sig in enumerate(("regress_x_to_y", "classify_x_to_y")):
        self.assertModelSpec(response.results[i].model_spec, H2, sig, 123)

    self.grpc(
        H2, "MultiInference regress_x_to_y + classify_x_to_y, x=2.0",
        lambda: self.clients.prediction.MultiInference(request, timeout=30),
        check=check, upstream="regression 3.0, classification score 3.0",
        source="[test.py] testMultiInference",
    )  # fmt: skip

  def test_grpc_model_status(self):
    def check(response):
      statuses = response.model_version_status
      self.assertEqual([s.version for s in statuses], [123])
      self.assertEqual(statuses[0].status.error_code, 0)
      self.assertEqual(statuses[0].state, util.ModelVersionStatus.AVAILABLE)

    self.grpc(
        H2, "GetModelStatus",
        lambda: util.model_status(self.clients, H2),
        check=check, upstream="one version 123, AVAILABLE, error_code 0",
        source="[test.py] testGetModelStatus",
    )  # fmt: skip

  def test_grpc_regress_float_input_signature(self):
    # Regress feeds serialized tf.Examples (a string tensor) to the
    # signature's input; regress_x2_to_y3's input is float x2.
    code, message = session_oracle.run_error(
        self.h2_dir, "regress_x2_to_y3",
        {"inputs": session_oracle.serialized_examples(util.example(x2=1.0))},
    )  # fmt: skip
    self.assertEqual(code, Code.INVALID_ARGUMENT.value[0])
    request = util.regression_request(
        H2, "regress_x2_to_y3", [util.example(x2=1.0)]
    )
    self.grpc(
        H2, "Regress regress_x2_to_y3 (float input) with an example",
        lambda: self.clients.prediction.Regress(request, timeout=30),
        code=Code.INVALID_ARGUMENT, prefix=message,
        upstream=f"INVALID_ARGUMENT: {message}",
        source="[regressor] + [tf]",
    )  # fmt: skip


if __name__ == "__main__":
  absltest.main()
