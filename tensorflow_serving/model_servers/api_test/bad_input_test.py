"""Bad requests: upstream's status code and message, and no harm done.

Every test sends requests that must fail with the code and message a client
of upstream TensorFlow Serving sees (HTTP status plus `{"error": ...}` over
REST, gRPC code plus details over gRPC). After each test, `tearDown` checks
that the same server still answers good requests over both APIs.
"""

from __future__ import annotations

import unittest

from google.protobuf import text_format
import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
TF2 = test_models.TF2
KERAS = test_models.KERAS
STRINGS = test_models.STRINGS
Code = grpc.StatusCode

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _config(repo: util.ModelRepo, labels: bool) -> str:
  half_extra = "version_labels { key: 'stable' value: 1 }" if labels else ""
  return test_models.model_config_text(
      {
          HALF: repo.base_path(HALF, HALF),
          TF2: repo.base_path(TF2, TF2),
          KERAS: repo.base_path(KERAS, KERAS),
          STRINGS: repo.base_path(STRINGS, STRINGS),
      },
      extra={HALF: half_extra},
  )


class BadInputTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    config_path = cls.repo.write("models.config", _config(cls.repo, False))
    cls.server = cls.class_server(
        cls.repo, [f"--model_config_file={config_path}"]
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(_config(cls.repo, True), request.config)
    cls.clients.model.HandleReloadConfigRequest(request, timeout=60)

  def tearDown(self):
    # Whatever the test sent, the server still serves good requests.
    self.assertIsNone(self.server.proc.poll(), "the server exited")
    response = self.clients.prediction.Predict(
        util.predict_request(HALF, {"x": np.array([2.0], np.float32)}),
        timeout=30,
    )
    self.assertEqual(list(response.outputs["y"].float_val), [3.0])
    reply = util.post_json(
        self.server, "/v1/models/half:predict", {"instances": [2.0]}
    )
    self.assertEqual(reply.status, 200, msg=reply.body)
    self.assertEqual(reply.json(), {"predictions": [3.0]})
    super().tearDown()

  # --- helpers ------------------------------------------------------------

  def rest_predict(
      self, doc_or_body, model: str = HALF, **kwargs
  ) -> util.HttpResponse:
    path = f"/v1/models/{model}:predict"
    if isinstance(doc_or_body, (str, bytes)):
      return util.http_request(self.server, "POST", path, doc_or_body, **kwargs)
    return util.post_json(self.server, path, doc_or_body, **kwargs)

  def grpc_predict(self, request: predict_pb2.PredictRequest):
    return self.clients.prediction.Predict(request, timeout=30)

  def assertPredictError(self, code, message=None, contains=(), **kwargs):
    request = util.predict_request(**kwargs)
    return self.assertRpcError(
        lambda: self.grpc_predict(request), code, message, contains
    )

  # --- JSON body ----------------------------------------------------------

  def test_malformed_json(self):
    for body in ('{"instances": [1.0,', "{instances: [1]}", "{]"):
      message = self.assertHttpError(self.rest_predict(body), 400)
      self.assertTrue(message.startswith("JSON Parse error: "), msg=message)

  def test_empty_body(self):
    self.assertHttpError(
        self.rest_predict(""), 400, "JSON Parse error: The document is empty"
    )
    self.assertHttpError(
        util.http_request(self.server, "POST", "/v1/models/half:regress"),
        400,
        "JSON Parse error: The document is empty",
    )

  def test_top_level_not_an_object(self):
    for body in ("[1.0, 2.0]", "3", '"instances"'):
      self.assertHttpError(
          self.rest_predict(body), 400, contains=["Is not object"]
      )

  def test_both_instances_and_inputs(self):
    self.assertHttpError(
        self.rest_predict({"instances": [1.0], "inputs": [1.0]}),
        400,
        contains=[
            "expecting only one of 'inputs' or 'instances' keys to " "exist"
        ],
    )

  def test_neither_instances_nor_inputs(self):
    self.assertHttpError(
        self.rest_predict({"signature_name": ""}),
        400,
        "Missing 'inputs' or 'instances' key",
    )
    self.assertHttpError(
        self.rest_predict({}), 400, "Missing 'inputs' or 'instances' key"
    )

  def test_ragged_rows(self):
    self.assertHttpError(
        self.rest_predict({"instances": [[1.0, 2.0, 3.0], [4.0]]}, model=KERAS),
        400,
        contains=["Expecting tensor size: 3 but got: 1"],
    )

  def test_ragged_columnar(self):
    self.assertHttpError(
        self.rest_predict(
            {"inputs": [[1.0, 2.0, 3.0], [4.0, 5.0]]}, model=KERAS
        ),
        400,
        contains=["Encountered list at unexpected size"],
    )

  def test_scalar_where_list_expected(self):
    self.assertHttpError(
        self.rest_predict({"inputs": [[1.0, 2.0, 3.0], 4.0]}, model=KERAS),
        400,
        contains=["found at incorrect level"],
    )

  def test_string_for_float(self):
    self.assertHttpError(
        self.rest_predict({"instances": ["a"]}),
        400,
        contains=[
            'JSON Value: "a" Type: String is not of expected type: ' "float"
        ],
    )

  def test_float_for_int(self):
    self.assertHttpError(
        self.rest_predict(
            {"instances": [{"text": "a", "count": 1.5}]}, model=STRINGS
        ),
        400,
        contains=[
            "JSON Value: 1.5 Type: Number is not of expected type: " "int64"
        ],
    )

  def test_number_for_string(self):
    self.assertHttpError(
        self.rest_predict(
            {"instances": [{"text": 1, "count": 1}]}, model=STRINGS
        ),
        400,
        contains=[
            "JSON Value: 1 Type: Number is not of expected type: " "string"
        ],
    )

  def test_bad_base64(self):
    self.assertHttpError(
        self.rest_predict(
            {
                "signature_name": "echo_bytes",
                "instances": [{"b64": "not base64!"}],
            },
            model=STRINGS,
        ),
        400,
        contains=["Unable to base64 decode"],
    )

  def test_empty_instances(self):
    self.assertHttpError(
        self.rest_predict({"instances": []}),
        400,
        contains=["No values in 'instances' array"],
    )

  def test_row_keys_must_equal_inputs(self):
    self.assertHttpError(
        self.rest_predict(
            {"signature_name": "two_inputs", "instances": [{"x": 1.0}]}
        ),
        400,
        contains=["keys must be equal to: x,x2"],
    )
    self.assertHttpError(
        self.rest_predict(
            {
                "signature_name": "two_inputs",
                "instances": [{"x": 1.0, "x2": 2.0, "z": 3.0}],
            }
        ),
        400,
        contains=["does not have named input: z"],
    )

  def test_plain_list_for_several_inputs(self):
    self.assertHttpError(
        self.rest_predict(
            {"signature_name": "two_inputs", "instances": [1.0, 2.0]}
        ),
        400,
        contains=[
            "instances is a plain list, but expecting list of objects "
            "as multiple input tensors required as per tensorinfo_map"
        ],
    )

  def test_columnar_missing_named_input(self):
    self.assertHttpError(
        self.rest_predict(
            {"signature_name": "two_inputs", "inputs": {"x": [1.0]}}
        ),
        400,
        "Missing named input: x2 in 'inputs' object.",
    )

  def test_rest_wrong_shape_names_input_and_shapes(self):
    message = self.assertHttpError(
        self.rest_predict({"instances": [[1.0, 2.0]]}, model=KERAS), 400
    )
    self.assertIn(test_models.KERAS_INPUT, message)
    self.assertRegex(message, r"\[\s*1\s*,\s*2\s*\]")  # received
    self.assertRegex(message, r"\[\s*(-1|\?)\s*,\s*3\s*\]")  # expected

  def test_classify_bad_feature_values(self):
    for examples in (
        [{"x": None}],
        [{"x": [[1.0]]}],
        [{"x": [1.0, "a"]}],
        [{"x": {"nested": 1}}],
    ):
      self.assertHttpError(
          util.post_json(
              self.server,
              "/v1/models/half:classify",
              {"signature_name": "classify_x_to_y", "examples": examples},
          ),
          400,
      )

  def test_classify_missing_examples(self):
    message = self.assertHttpError(
        util.post_json(
            self.server,
            "/v1/models/half:classify",
            {"signature_name": "classify_x_to_y"},
        ),
        400,
    )
    self.assertIn("examples", message)

  # --- Model, version, label, signature -----------------------------------

  def test_unknown_model(self):
    message = "Servable not found for request: Latest(nope)"
    self.assertHttpError(
        self.rest_predict({"instances": [1.0]}, model="nope"), 404, message
    )
    self.assertHttpError(
        util.http_request(self.server, "GET", "/v1/models/nope/metadata"),
        404,
        message,
    )
    self.assertHttpError(
        util.post_json(
            self.server, "/v1/models/nope:regress", {"examples": [{"x": 1.0}]}
        ),
        404,
        message,
    )
    self.assertPredictError(
        Code.NOT_FOUND,
        message,
        model="nope",
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_unknown_version(self):
    message = "Servable not found for request: Specific(half, 7)"
    self.assertHttpError(
        util.post_json(
            self.server,
            "/v1/models/half/versions/7:predict",
            {"instances": [1.0]},
        ),
        404,
        message,
    )
    self.assertPredictError(
        Code.NOT_FOUND,
        message,
        model=HALF,
        version=7,
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_status_unknown_model_and_version(self):
    self.assertHttpError(
        util.http_request(self.server, "GET", "/v1/models/nope"),
        404,
        "Could not find any versions of model nope",
    )
    self.assertHttpError(
        util.http_request(self.server, "GET", "/v1/models/half/versions/7"),
        404,
        "Could not find version 7 of model half",
    )

  def test_unknown_label(self):
    message = "Unrecognized servable version label: nope"
    self.assertHttpError(
        util.post_json(
            self.server,
            "/v1/models/half/labels/nope:predict",
            {"instances": [1.0]},
        ),
        400,
        message,
    )
    self.assertHttpError(
        util.http_request(
            self.server, "GET", "/v1/models/half/labels/nope/metadata"
        ),
        400,
        message,
    )
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        message,
        model=HALF,
        version_label="nope",
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_unknown_signature_rest_predict(self):
    self.assertHttpError(
        self.rest_predict({"signature_name": "nope", "instances": [1.0]}),
        400,
        'Serving signature name: "nope" not found in signature def',
    )

  def test_unknown_signature_grpc_predict(self):
    self.assertPredictError(
        Code.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
        model=HALF,
        signature_name="nope",
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_unknown_signature_classify_regress(self):
    message = "No signature was found with the name: nope"
    examples = [util.example(x=1.0)]
    self.assertRpcError(
        lambda: self.clients.prediction.Classify(
            util.classification_request(HALF, "nope", examples), timeout=30
        ),
        Code.INVALID_ARGUMENT,
        message,
    )
    self.assertRpcError(
        lambda: self.clients.prediction.Regress(
            util.regression_request(HALF, "nope", examples), timeout=30
        ),
        Code.INVALID_ARGUMENT,
        message,
    )
    for verb in ("classify", "regress"):
      self.assertHttpError(
          util.post_json(
              self.server,
              f"/v1/models/half:{verb}",
              {"signature_name": "nope", "examples": [{"x": 1.0}]},
          ),
          400,
          message,
      )

  def test_empty_model_name(self):
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        "ModelSpec has no name specified.",
        model="",
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_missing_model_spec(self):
    message = "Missing ModelSpec"
    prediction = self.clients.prediction
    calls = {
        "Predict": lambda: prediction.Predict(
            predict_pb2.PredictRequest(), timeout=30
        ),
        "Classify": lambda: prediction.Classify(
            classification_pb2.ClassificationRequest(), timeout=30
        ),
        "Regress": lambda: prediction.Regress(
            regression_pb2.RegressionRequest(), timeout=30
        ),
        "GetModelMetadata": lambda: prediction.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            ),
            timeout=30,
        ),
        "GetModelStatus": lambda: self.clients.model.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(), timeout=30
        ),
    }
    for name, call in calls.items():
      with self.subTest(rpc=name):
        self.assertRpcError(call, Code.INVALID_ARGUMENT, message)

  # --- Inputs and outputs -------------------------------------------------

  def test_extra_input(self):
    message = (
        "input size does not match signature: 2!=1 len({x,z}) != "
        "len({x}). Sent extra: {z}. Missing but required: {}."
    )
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        message,
        model=HALF,
        inputs={
            "x": np.array([1.0], np.float32),
            "z": np.array([1.0], np.float32),
        },
    )

  def test_missing_input(self):
    message = (
        "input size does not match signature: 1!=2 len({x}) != "
        "len({x,x2}). Sent extra: {}. Missing but required: {x2}."
    )
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        message,
        model=HALF,
        signature_name="two_inputs",
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_wrong_input_name(self):
    message = (
        "input size does not match signature: 1!=1 len({z}) != "
        "len({x}). Sent extra: {z}. Missing but required: {x}."
    )
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        message,
        model=HALF,
        inputs={"z": np.array([1.0], np.float32)},
    )

  def test_wrong_dtype_names_input_and_types(self):
    err = self.assertPredictError(
        Code.INVALID_ARGUMENT,
        model=STRINGS,
        inputs={
            "text": np.array([b"a"], object),
            "count": np.array([1.5], np.float32),
        },
    )
    details = err.details()
    self.assertIn("count", details)
    self.assertIn("int64", details.lower())
    self.assertIn("float", details.lower())
    err = self.assertPredictError(
        Code.INVALID_ARGUMENT,
        model=HALF,
        inputs={"x": np.array([b"a"], object)},
        contains=["to be float but string is provided"],
    )
    self.assertRegex(err.details(), r"\bx\b|'x'")

  def test_shape_the_ops_accept_is_served(self):
    # Upstream runs the graph on whatever shape arrives: row_sums declares
    # matrix [-1, 2], but reduce_sum over axis 1 computes for [3, 3] too.
    response = self.clients.prediction.Predict(
        util.predict_request(
            TF2, {"matrix": np.ones([3, 3], np.float32)}, "row_sums"
        ),
        timeout=30,
    )
    self.assertEqual(list(response.outputs["sums"].float_val), [3.0] * 3)

  def test_shape_tensorflow_rejects_names_input_and_shapes(self):
    err = self.assertPredictError(
        Code.INVALID_ARGUMENT,
        model=KERAS,
        inputs={test_models.KERAS_INPUT: np.ones([4], np.float32)},
    )
    # TensorFlow's words come first (clients match on them), then the hint.
    details = err.details()
    self.assertNotRegex(details, r"^Input '")
    self.assertIn(
        f"input '{test_models.KERAS_INPUT}' has shape [4], the signature "
        "declares [?,3]",
        details,
    )

  def test_unparsable_tensor_proto(self):
    bad = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_content=b"\x00\x01\x02"
    )
    bad.tensor_shape.dim.add(size=2)
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        "tensor parsing error: x",
        model=HALF,
        inputs={"x": bad},
    )

  def test_unknown_output_filter(self):
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        "output tensor alias not found in signature: nope Outputs expected "
        "to be in the set {y,y2}.",
        model=HALF,
        signature_name="two_outputs",
        output_filter=["nope"],
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_duplicate_output_filter(self):
    self.assertPredictError(
        Code.INVALID_ARGUMENT,
        "duplicate output tensor alias: y",
        model=HALF,
        signature_name="two_outputs",
        output_filter=["y", "y"],
        inputs={"x": np.array([1.0], np.float32)},
    )

  def test_empty_classify_and_regress_input(self):
    self.assertRpcError(
        lambda: self.clients.prediction.Classify(
            util.classification_request(HALF, "classify_x_to_y", []), timeout=30
        ),
        Code.INVALID_ARGUMENT,
        "Input is empty.",
    )
    self.assertRpcError(
        lambda: self.clients.prediction.Regress(
            util.regression_request(HALF, "regress_x_to_y", []), timeout=30
        ),
        Code.INVALID_ARGUMENT,
        "Input is empty.",
    )

  # --- MultiInference -----------------------------------------------------

  def multi_inference(self, tasks, examples=None):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
      task = request.tasks.add(method_name=method)
      task.model_spec.name = model
      task.model_spec.signature_name = signature
    request.input.example_list.examples.extend(
        examples if examples is not None else [util.example(x=1.0)]
    )
    return lambda: self.clients.prediction.MultiInference(request, timeout=30)

  def test_multi_inference_errors(self):
    self.assertRpcError(
        self.multi_inference(
            [(HALF, "classify_x_to_y", CLASSIFY), (TF2, "regress", REGRESS)]
        ),
        Code.INVALID_ARGUMENT,
        "All ModelSpecs in a MultiInferenceRequest must access the same "
        "model name.",
    )
    self.assertRpcError(
        self.multi_inference(
            [
                (HALF, "regress_x_to_y", REGRESS),
                (HALF, "regress_x_to_y", REGRESS),
            ]
        ),
        Code.INVALID_ARGUMENT,
        "Duplicate evaluation of signature: regress_x_to_y",
    )
    self.assertRpcError(
        self.multi_inference([(HALF, "nope", REGRESS)]),
        Code.INVALID_ARGUMENT,
        "Requested signature not found in model graph: nope",
    )
    self.assertRpcError(
        self.multi_inference(
            [(HALF, "serving_default", "tensorflow/serving/predict")]
        ),
        Code.UNIMPLEMENTED,
        "Unsupported signature method_name: tensorflow/serving/predict",
    )
    self.assertRpcError(
        self.multi_inference([(HALF, "regress_x_to_y", REGRESS)], []),
        Code.INVALID_ARGUMENT,
        "Input is empty.",
    )

  # --- URLs and methods ---------------------------------------------------

  def test_malformed_paths(self):
    for method, path in (
        ("GET", "/v1/models/half/versions/abc"),
        ("GET", "/v1/models/half/metadata/extra"),
        ("GET", "/v1/foo"),
        ("GET", "/v1/models/half:predict"),
        ("POST", "/v1/models/half:explode"),
        ("POST", "/v1/models/half"),
        ("POST", "/v1/models:predict"),
        ("POST", "/v1/models/half/versions/x:predict"),
    ):
      with self.subTest(method=method, path=path):
        body = '{"instances": [1.0]}' if method == "POST" else None
        self.assertHttpError(
            util.http_request(self.server, method, path, body),
            400,
            f"Malformed request: {method} {path}",
        )

  def test_unknown_http_methods(self):
    for method in ("PUT", "DELETE", "PATCH"):
      with self.subTest(method=method):
        self.assertHttpError(
            util.http_request(self.server, method, "/v1/models/half", "{}"),
            400,
            f"Malformed request: {method} /v1/models/half",
        )

  def test_options_without_cors_support(self):
    self.assertHttpError(
        util.http_request(self.server, "OPTIONS", "/v1/models/half"),
        400,
        "Malformed request: OPTIONS /v1/models/half",
    )

  def test_version_out_of_int64_range(self):
    self.assertHttpError(
        util.http_request(
            self.server, "GET", "/v1/models/half/versions/99999999999999999999"
        ),
        400,
        "Failed to convert version: 99999999999999999999 to numeric.",
    )

  def test_missing_model_name(self):
    for path in (
        "/v1/models/versions/3",
        "/v1/models/labels/stable",
        "/v1/models/versions/3/metadata",
    ):
      with self.subTest(path=path):
        self.assertHttpError(
            util.http_request(self.server, "GET", path),
            400,
            "Missing model name in request.",
        )
    self.assertHttpError(
        util.http_request(self.server, "GET", "/v1/models/"),
        400,
        "Malformed request: GET /v1/models/",
    )

  def test_gzip_body_is_not_guessed(self):
    # Gzip without the Content-Encoding header is just invalid JSON.
    message = self.assertHttpError(
        self.rest_predict(util.gzip_bytes(b'{"instances": [1.0]}')), 400
    )
    self.assertTrue(message.startswith("JSON Parse error"), msg=message)


if __name__ == "__main__":
  unittest.main()
