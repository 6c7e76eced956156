"""The REST API (`/v1/...`) as upstream clients use it: URLs and JSON shapes.

One server (a --model_config_file with TF1, TF2, Keras, string/int and
non-finite models, plus a model whose name needs URL encoding) serves every
test; none of them changes its state.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import unittest

from google.protobuf import text_format
import numpy as np

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models

HALF = test_models.HALF
TF2 = test_models.TF2
KERAS = test_models.KERAS
STRINGS = test_models.STRINGS
NONFINITE = test_models.NONFINITE


def _status_entry(version: int) -> dict:
  return {
      "version": str(version),
      "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""},
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
          HALF: repo.base_path(HALF, HALF, (1, 2)),
          TF2: repo.base_path(TF2, TF2),
          KERAS: repo.base_path(KERAS, KERAS),
          STRINGS: repo.base_path(STRINGS, STRINGS),
          NONFINITE: repo.base_path(NONFINITE, NONFINITE),
          util.URL_NAME: repo.base_path(util.URL_NAME, HALF, (7,)),
      },
      extra={HALF: half_extra},
  )


class RestApiTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    config_path = cls.repo.write("models.config", _config(cls.repo, False))
    cls.server = cls.class_server(
        cls.repo, [f"--model_config_file={config_path}"]
    )
    clients = util.GrpcClients(cls.server.grpc_address)
    try:
      request = model_management_pb2.ReloadConfigRequest()
      text_format.Parse(_config(cls.repo, True), request.config)
      clients.model.HandleReloadConfigRequest(request, timeout=60)
    finally:
      clients.close()

  def get(self, path: str, **kwargs) -> util.HttpResponse:
    return util.http_request(self.server, "GET", path, **kwargs)

  def post(self, path: str, doc, **kwargs) -> util.HttpResponse:
    return util.post_json(self.server, path, doc, **kwargs)

  # --- Model status -------------------------------------------------------

  def test_status_all_versions(self):
    response = self.get("/v1/models/half")
    self.assertEqual(
        self.assertHttpOk(response),
        {"model_version_status": [_status_entry(2), _status_entry(1)]},
    )

  def test_status_one_version(self):
    doc = self.assertHttpOk(self.get("/v1/models/half/versions/1"))
    self.assertEqual(doc, {"model_version_status": [_status_entry(1)]})

  def test_status_label_reports_all_versions(self):
    # Upstream quirk: the label is ignored by GetModelStatus.
    doc = self.assertHttpOk(self.get("/v1/models/half/labels/stable"))
    self.assertEqual(
        doc, {"model_version_status": [_status_entry(2), _status_entry(1)]}
    )

  def test_status_other_models(self):
    for name in (TF2, KERAS, STRINGS, NONFINITE):
      doc = self.assertHttpOk(self.get(f"/v1/models/{name}"))
      self.assertEqual(doc, {"model_version_status": [_status_entry(1)]})

  # --- Metadata -----------------------------------------------------------

  def test_metadata_json_shape(self):
    doc = self.assertHttpOk(self.get("/v1/models/half/metadata"))
    self.assertEqual(
        doc["model_spec"],
        {"name": "half", "signature_name": "", "version": "2"},
    )
    self.assertEqual(list(doc["metadata"]), ["signature_def"])
    sig_map = doc["metadata"]["signature_def"]["signature_def"]
    self.assertEqual(
        set(sig_map),
        {
            "serving_default",
            "two_outputs",
            "two_inputs",
            "regress_x_to_y",
            "classify_x_to_y",
        },
    )
    default = sig_map["serving_default"]
    self.assertEqual(
        default["inputs"],
        {
            "x": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {
                    "dim": [{"size": "-1", "name": ""}],
                    "unknown_rank": False,
                },
                "name": "x:0",
            }
        },
    )
    self.assertEqual(default["outputs"]["y"]["dtype"], "DT_FLOAT")
    self.assertEqual(default["outputs"]["y"]["name"], "y:0")
    self.assertEqual(default["method_name"], "tensorflow/serving/predict")
    self.assertEqual(default["defaults"], {})
    self.assertEqual(
        sig_map["regress_x_to_y"]["method_name"], "tensorflow/serving/regress"
    )

  def test_metadata_url_forms(self):
    for path, version in (
        ("/v1/models/half/metadata", "2"),
        ("/v1/models/half/versions/1/metadata", "1"),
        ("/v1/models/half/versions/2/metadata", "2"),
        ("/v1/models/half/labels/stable/metadata", "1"),
        ("/v1/models/half/labels/canary/metadata", "2"),
    ):
      doc = self.assertHttpOk(self.get(path))
      self.assertEqual(doc["model_spec"]["version"], version, msg=path)
      self.assertEqual(doc["model_spec"]["name"], HALF)

  def test_metadata_keras_and_tf2(self):
    doc = self.assertHttpOk(self.get("/v1/models/keras/metadata"))
    sig = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    features = sig["inputs"][test_models.KERAS_INPUT]
    self.assertEqual(features["dtype"], "DT_FLOAT")
    self.assertEqual(
        features["tensor_shape"]["dim"],
        [{"size": "-1", "name": ""}, {"size": "3", "name": ""}],
    )
    doc = self.assertHttpOk(self.get("/v1/models/tf2/versions/1/metadata"))
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    self.assertNotIn("__saved_model_init_op", sigs)
    self.assertEqual(set(sigs["combine"]["inputs"]), {"a", "b"})

  # --- Predict: row format ------------------------------------------------

  def test_predict_row_single_input(self):
    response = self.post(
        "/v1/models/half:predict", {"instances": [1.0, 2.0, 5.0]}
    )
    self.assertEqual(
        self.assertHttpOk(response), {"predictions": [2.5, 3.0, 4.5]}
    )

  def test_predict_row_integers_for_float_input(self):
    response = self.post("/v1/models/half:predict", {"instances": [1, 2]})
    self.assertEqual(self.assertHttpOk(response), {"predictions": [2.5, 3.0]})

  def test_predict_row_multiple_inputs_and_outputs(self):
    response = self.post(
        "/v1/models/half:predict",
        {
            "signature_name": "two_inputs",
            "instances": [{"x": 2.0, "x2": 0.0}, {"x": 4.0, "x2": 1.0}],
        },
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {"predictions": [{"y": 3.0, "y2": 4.0}, {"y": 4.0, "y2": 5.0}]},
    )

  def test_predict_row_multiple_outputs(self):
    response = self.post(
        "/v1/models/half:predict",
        {"signature_name": "two_outputs", "instances": [2.0]},
    )
    self.assertEqual(
        self.assertHttpOk(response), {"predictions": [{"y": 3.0, "y2": 4.0}]}
    )

  def test_predict_row_named_single_input(self):
    # A list of objects works for a single input too.
    response = self.post(
        "/v1/models/half:predict", {"instances": [{"x": 2.0}, {"x": 4.0}]}
    )
    self.assertEqual(self.assertHttpOk(response), {"predictions": [3.0, 4.0]})

  def test_predict_row_keras(self):
    features = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]
    response = self.post("/v1/models/keras:predict", {"instances": features})
    doc = self.assertHttpOk(response)
    self.assertEqual(list(doc), ["predictions"])
    self.assertAllClose(
        doc["predictions"], test_models.keras_expected(np.array(features))
    )

  def test_predict_row_tf2(self):
    response = self.post(
        "/v1/models/tf2:predict",
        {
            "signature_name": "combine",
            "instances": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}],
        },
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {
            "predictions": [
                {"sum": 3.0, "product": 2.0},
                {"sum": 7.0, "product": 12.0},
            ]
        },
    )

  # --- Predict: columnar format -------------------------------------------

  def test_predict_columnar_single_input(self):
    response = self.post("/v1/models/half:predict", {"inputs": [1.0, 2.0]})
    self.assertEqual(self.assertHttpOk(response), {"outputs": [2.5, 3.0]})

  def test_predict_columnar_named_single_input(self):
    response = self.post(
        "/v1/models/half:predict", {"inputs": {"x": [1.0, 2.0]}}
    )
    self.assertEqual(self.assertHttpOk(response), {"outputs": [2.5, 3.0]})

  def test_predict_columnar_multiple_inputs_and_outputs(self):
    response = self.post(
        "/v1/models/tf2:predict",
        {
            "signature_name": "combine",
            "inputs": {"a": [1.0, 3.0], "b": [2.0, 4.0]},
        },
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {"outputs": {"sum": [3.0, 7.0], "product": [2.0, 12.0]}},
    )

  def test_predict_columnar_multiple_outputs(self):
    response = self.post(
        "/v1/models/half:predict",
        {"signature_name": "two_outputs", "inputs": [2.0, 4.0]},
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {"outputs": {"y": [3.0, 4.0], "y2": [4.0, 5.0]}},
    )

  def test_predict_columnar_matrix(self):
    response = self.post(
        "/v1/models/tf2:predict",
        {"signature_name": "row_sums", "inputs": [[1, 2], [3, 4], [5, 6]]},
    )
    self.assertEqual(self.assertHttpOk(response), {"outputs": [3.0, 7.0, 11.0]})

  # --- Predict: versions, labels, names -----------------------------------

  def test_predict_version_and_label_urls(self):
    for path in (
        "/v1/models/half/versions/1:predict",
        "/v1/models/half/versions/2:predict",
        "/v1/models/half/labels/stable:predict",
        "/v1/models/half/labels/canary:predict",
    ):
      response = self.post(path, {"instances": [0.0]})
      self.assertEqual(
          self.assertHttpOk(response), {"predictions": [2.0]}, msg=path
      )

  def test_url_encoded_model_name(self):
    quoted = util.URL_NAME_QUOTED
    response = self.post(f"/v1/models/{quoted}:predict", {"instances": [2.0]})
    self.assertEqual(self.assertHttpOk(response), {"predictions": [3.0]})
    doc = self.assertHttpOk(self.get(f"/v1/models/{quoted}"))
    self.assertEqual(doc, {"model_version_status": [_status_entry(7)]})
    doc = self.assertHttpOk(self.get(f"/v1/models/{quoted}/metadata"))
    self.assertEqual(doc["model_spec"]["name"], util.URL_NAME)
    response = self.post(
        f"/v1/models/{quoted}/versions/7:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]},
    )
    self.assertEqual(self.assertHttpOk(response), {"results": [3.0]})

  def test_paths_are_case_insensitive(self):
    response = self.post("/V1/Models/half:PREDICT", {"instances": [2.0]})
    self.assertEqual(self.assertHttpOk(response), {"predictions": [3.0]})
    self.assertHttpOk(self.get("/V1/MODELS/half/VERSIONS/1/METADATA"))

  # --- Types: strings, ints, base64, non-finite ---------------------------

  def test_string_and_int_inputs(self):
    response = self.post(
        "/v1/models/strings:predict",
        {
            "instances": [
                {"text": "abc", "count": 1},
                {"text": "h\u00e9llo", "count": 10},
            ]
        },
    )
    doc = self.assertHttpOk(response)
    self.assertEqual([p["total"] for p in doc["predictions"]], [4, 15])
    self.assertEqual(doc["predictions"][0]["upper"], "ABC")
    self.assertIsInstance(doc["predictions"][0]["total"], int)

  def test_int64_precision(self):
    big = 2**62 + 1  # Not representable as a double.
    response = self.post(
        "/v1/models/strings:predict",
        {"inputs": {"text": ["ab"], "count": [big]}},
    )
    doc = self.assertHttpOk(response)
    self.assertEqual(doc["outputs"]["total"], [big + 2])

  def test_request_body_over_1mb(self):
    # Upstream's REST server has no body size limit.
    x = [float(i) for i in range(200_000)]  # About 2 MB of JSON.
    response = self.post("/v1/models/half:predict", {"instances": x})
    doc = self.assertHttpOk(response)
    self.assertEqual(len(doc["predictions"]), len(x))
    self.assertEqual(doc["predictions"][-1], 0.5 * x[-1] + 2)

  def test_int32_input_and_output(self):
    response = self.post(
        "/v1/models/strings:predict",
        {"signature_name": "int32_square", "inputs": {"n": [3, -4]}},
    )
    self.assertEqual(self.assertHttpOk(response), {"outputs": [9, 16]})

  def test_b64_input_and_bytes_output(self):
    data = [b"\x00\xff\xfe", b"plain"]
    response = self.post(
        "/v1/models/strings:predict",
        {
            "signature_name": "echo_bytes",
            "instances": [{"b64": base64.b64encode(d).decode()} for d in data],
        },
    )
    doc = self.assertHttpOk(response)
    predictions = doc["predictions"]
    self.assertEqual(len(predictions), 2)
    for value, prediction in zip(data, predictions):
      # `data_bytes` ends in _bytes: written as {"b64": ...}.
      self.assertEqual(list(prediction["data_bytes"]), ["b64"])
      self.assertEqual(base64.b64decode(prediction["data_bytes"]["b64"]), value)
      self.assertEqual(prediction["size"], len(value))

  def test_b64_columnar(self):
    response = self.post(
        "/v1/models/strings:predict",
        {
            "signature_name": "echo_bytes",
            "inputs": {
                "data": [{"b64": base64.b64encode(b"\x01\x02").decode()}]
            },
        },
    )
    doc = self.assertHttpOk(response)
    self.assertEqual(doc["outputs"]["size"], [2])
    self.assertEqual(
        doc["outputs"]["data_bytes"],
        [{"b64": base64.b64encode(b"\x01\x02").decode()}],
    )

  def test_b64_for_text_input(self):
    # {"b64": ...} is accepted for any DT_STRING input.
    response = self.post(
        "/v1/models/strings:predict",
        {
            "instances": [
                {
                    "text": {"b64": base64.b64encode(b"abcd").decode()},
                    "count": 0,
                }
            ]
        },
    )
    doc = self.assertHttpOk(response)
    self.assertEqual(doc["predictions"][0]["total"], 4)

  def test_nonfinite_in_and_out(self):
    body = '{"inputs": [0.0, -1.0, NaN, Infinity, -Infinity, 1.0]}'
    response = util.http_request(
        self.server, "POST", "/v1/models/nonfinite:predict", body
    )
    self.assertEqual(response.status, 200, msg=response.body)
    for token in (b"NaN", b"Infinity", b"-Infinity"):
      self.assertIn(token, response.body)
    outputs = response.json()["outputs"]
    echo = outputs["echo"]
    self.assertEqual(echo[0:2], [0.0, -1.0])
    self.assertTrue(math.isnan(echo[2]))
    self.assertEqual(echo[3:], [math.inf, -math.inf, 1.0])
    log = outputs["log"]
    self.assertEqual(log[0], -math.inf)
    self.assertTrue(math.isnan(log[1]) and math.isnan(log[2]))
    self.assertEqual(log[3], math.inf)
    self.assertTrue(math.isnan(log[4]))
    self.assertEqual(log[5], 0.0)

  def test_nonfinite_row_format(self):
    response = util.http_request(
        self.server,
        "POST",
        "/v1/models/nonfinite:predict",
        '{"instances": [0, NaN]}',
    )
    predictions = response.json()["predictions"]
    self.assertEqual(predictions[0], {"log": -math.inf, "echo": 0.0})
    self.assertTrue(math.isnan(predictions[1]["log"]))

  # --- Classify / Regress -------------------------------------------------

  def test_classify_scores_only(self):
    response = self.post(
        "/v1/models/half:classify",
        {
            "signature_name": "classify_x_to_y",
            "examples": [{"x": 1.0}, {"x": 4.0}],
        },
    )
    self.assertEqual(
        self.assertHttpOk(response), {"results": [[["", 2.5]], [["", 4.0]]]}
    )

  def test_classify_classes_and_scores(self):
    response = self.post(
        "/v1/models/tf2:classify",
        {"signature_name": "classify", "examples": [{"x": 1.0}, {"x": [-2.0]}]},
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {
            "results": [
                [["neg", -1.0], ["pos", 3.0]],
                [["neg", 2.0], ["pos", -6.0]],
            ]
        },
    )

  def test_classify_with_context(self):
    response = self.post(
        "/v1/models/tf2/versions/1:classify",
        {
            "signature_name": "classify",
            "context": {"x": 2.0},
            "examples": [{"other": "a"}, {"other": 3}],
        },
    )
    self.assertEqual(
        self.assertHttpOk(response),
        {
            "results": [
                [["neg", -2.0], ["pos", 6.0]],
                [["neg", -2.0], ["pos", 6.0]],
            ]
        },
    )

  def test_regress(self):
    response = self.post(
        "/v1/models/half:regress",
        {
            "signature_name": "regress_x_to_y",
            "examples": [{"x": 2.0}, {"x": -4.0}],
        },
    )
    self.assertEqual(self.assertHttpOk(response), {"results": [3.0, 0.0]})

  def test_regress_with_context_and_label(self):
    response = self.post(
        "/v1/models/half/labels/stable:regress",
        {
            "signature_name": "regress_x_to_y",
            "context": {"x": 6.0},
            "examples": [{"unused": "a"}, {"unused": {"b64": "AAE="}}],
        },
    )
    self.assertEqual(self.assertHttpOk(response), {"results": [5.0, 5.0]})

  def test_regress_tf2(self):
    response = self.post(
        "/v1/models/tf2:regress",
        {"signature_name": "regress", "examples": [{"x": 1.5}]},
    )
    self.assertEqual(self.assertHttpOk(response), {"results": [5.5]})

  # --- Transport ----------------------------------------------------------

  def test_content_type_is_json(self):
    for response in (
        self.get("/v1/models/half"),
        self.get("/v1/models/half/metadata"),
        self.post("/v1/models/half:predict", {"instances": [1]}),
        self.get("/v1/models/nope"),
    ):
      self.assertEqual(response.content_type.split(";")[0], "application/json")

  def test_no_cors_headers_by_default(self):
    response = self.post(
        "/v1/models/half:predict",
        {"instances": [1]},
        headers={"Origin": "http://example.com"},
    )
    self.assertEqual(response.status, 200)
    self.assertIsNone(response.headers.get("Access-Control-Allow-Origin"))

  def test_keep_alive_connection_serves_several_requests(self):
    conn = http.client.HTTPConnection(
        "localhost", self.server.rest_port, timeout=30
    )
    try:
      for x in (1.0, 2.0, 3.0):
        conn.request(
            "POST",
            "/v1/models/half:predict",
            body=json.dumps({"instances": [x]}),
        )
        reply = conn.getresponse()
        self.assertEqual(
            json.loads(reply.read()), {"predictions": [0.5 * x + 2]}
        )
    finally:
      conn.close()

  def test_non_api_path_is_404(self):
    # /v2 is the Open Inference Protocol's (beyond upstream); other roots
    # are not API paths.
    response = self.get("/v3/models/half")
    self.assertEqual(response.status, 404)
    response = self.get("/index.html")
    self.assertEqual(response.status, 404)
    # No --monitoring_config_file: no Prometheus endpoint (upstream #462).
    response = self.get("/monitoring/prometheus/metrics")
    self.assertEqual(response.status, 404)


if __name__ == "__main__":
  unittest.main()
