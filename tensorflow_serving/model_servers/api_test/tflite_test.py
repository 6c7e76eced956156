"""TF Lite through the real server: --prefer_tflite_model serves model.tflite.

Each version directory holds only `model.tflite` (no SavedModel), so a
successful answer can only come from the TF Lite interpreter.
"""

from __future__ import annotations

import os

from absl.testing import absltest
from google.protobuf import json_format
import grpc
import numpy as np

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.servables.tensorflow.test_util import tflite_models


class TfLiteServingTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    repo = cls.class_repo()
    with_sigs = repo.empty_base_path("lite")
    tflite_models.export_half_plus_two(
        os.path.join(with_sigs, "1"), signature_defs=True, saved_model=False
    )
    no_sigs = repo.empty_base_path("lite_nosig")
    tflite_models.export_half_plus_two(
        os.path.join(no_sigs, "1"), signature_defs=False, saved_model=False
    )
    config = repo.write(
        "tflite.config",
        f"""
        model_config_list {{
          config {{ name: "lite" base_path: "{with_sigs}"
                   model_platform: "tensorflow" }}
          config {{ name: "lite_nosig" base_path: "{no_sigs}"
                   model_platform: "tensorflow" }}
        }}""",
    )
    cls.server = cls.class_server(
        repo,
        [
            f"--model_config_file={config}",
            "--prefer_tflite_model",
            "--num_tflite_pools=2",
            "--num_tflite_interpreters_per_pool=1",
        ],
    )
    cls.clients = cls.class_clients(cls.server.grpc_address)

  def test_grpc_predict_with_signature_defs(self):
    response = self.clients.prediction.Predict(
        util.predict_request(
            "lite", {"x": np.array([1.0, 2.0, 5.0], np.float32)}
        ),
        timeout=30,
    )
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertEqual(response.model_spec.version.value, 1)
    self.assertAllClose(response.outputs["y"].float_val, [2.5, 3.0, 4.5])

  def test_grpc_named_signature_and_errors(self):
    response = self.clients.prediction.Predict(
        util.predict_request(
            "lite",
            {"x": np.array([2.0], np.float32)},
            signature_name="two_outputs",
            output_filter=["y2"],
        ),
        timeout=30,
    )
    self.assertEqual(set(response.outputs), {"y2"})
    self.assertAllClose(response.outputs["y2"].float_val, [4.0])
    self.assertRpcError(
        lambda: self.clients.prediction.Predict(
            util.predict_request(
                "lite",
                {"x": np.array([1.0], np.float32)},
                signature_name="nope",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    )

  def test_rest_predict_and_metadata(self):
    doc = self.assertHttpOk(
        util.post_json(
            self.server, "/v1/models/lite:predict", {"instances": [1.0, 3.0]}
        )
    )
    self.assertAllClose(doc["predictions"], [2.5, 3.5])
    meta = self.assertHttpOk(
        util.http_request(self.server, "GET", "/v1/models/lite/metadata")
    )
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    self.assertLessEqual(
        {"serving_default", "two_outputs", "two_inputs"}, set(sigs)
    )
    self.assertEqual(
        sigs["serving_default"]["inputs"]["x"]["dtype"], "DT_FLOAT"
    )

  def test_model_without_signature_defs_gets_serving_default(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"]
    )
    request.model_spec.name = "lite_nosig"
    response = self.clients.prediction.GetModelMetadata(request, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    self.assertEqual(list(sig_map.signature_def), ["serving_default"])
    sig = json_format.MessageToDict(sig_map.signature_def["serving_default"])
    (alias,) = sig["inputs"]
    (out_alias,) = sig["outputs"]
    response = self.clients.prediction.Predict(
        util.predict_request(
            "lite_nosig", {alias: np.array([4.0], np.float32)}
        ),
        timeout=30,
    )
    self.assertAllClose(response.outputs[out_alias].float_val, [4.0])


if __name__ == "__main__":
  absltest.main()
