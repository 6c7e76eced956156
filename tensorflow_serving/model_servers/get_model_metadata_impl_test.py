"""GetModelMetadata over a TF Lite model: the SignatureDefs it reports."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.model_servers import get_model_metadata_impl
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import tflite_bundle
from tensorflow_serving.servables.tensorflow.test_util import tflite_models
from tensorflow_serving.test_util import in_process


class TfLiteMetadataTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    export_dir = tflite_models.export_half_plus_two(os.path.join(tmp, "1"))
    cls.bundle = tflite_bundle.load_tflite_bundle(
        export_dir, num_pools=1, num_interpreters_per_pool=1
    )
    cls.saved_model = saved_model_bundle.load_saved_model_bundle(
        export_dir, ["serve"]
    )

  @classmethod
  def tearDownClass(cls):
    cls.bundle.close()
    cls.saved_model.close()
    super().tearDownClass()

  def test_metadata_reports_tflite_signature_defs(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"]
    )
    request.model_spec.name = "m"
    core = in_process.FakeCore({"m": (1, self.bundle)})
    response = get_model_metadata_impl.get_model_metadata(core, request)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    self.assertEqual(
        sorted(sig_map.signature_def),
        ["serving_default", "two_inputs", "two_outputs"],
    )
    sig_def = sig_map.signature_def["serving_default"]
    self.assertEqual(sig_def.method_name, "tensorflow/serving/predict")
    self.assertEqual(list(sig_def.inputs), ["x"])
    self.assertEqual(list(sig_def.outputs), ["y"])
    info = sig_def.inputs["x"]
    self.assertEqual(info.dtype, types_pb2.DT_FLOAT)
    self.assertEqual([d.size for d in info.tensor_shape.dim], [-1])
    self.assertFalse(info.tensor_shape.unknown_rank)
    # Tensor names are the interpreter's, which the SavedModel shares here.
    self.assertEqual(
        info.name,
        self.saved_model.signatures["serving_default"].inputs["x"].tensor_name,
    )
    self.assertEqual(sig_def.outputs["y"].dtype, types_pb2.DT_FLOAT)


if __name__ == "__main__":
  absltest.main()
