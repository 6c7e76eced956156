"""SavedModelBundle + predict_util: running signatures and upstream's errors."""

from __future__ import annotations

import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import session_oracle
from tensorflow_serving.util import status


class SavedModelBundleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    path = half_plus_two.export_half_plus_two_tf1(os.path.join(tmp, "1"))
    cls.bundle = saved_model_bundle.load_saved_model_bundle(path, ["serve"])

  def _request(self, signature="", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
      request.inputs[alias].CopyFrom(
          tensor_codec.ndarray_to_tensor_proto(np.asarray(value))
      )
    return request

  def _predict(self, request, **kwargs):
    response = predict_pb2.PredictResponse()
    predict_util.run_predict(self.bundle, request, response, **kwargs)
    return response

  def test_signatures_parsed(self):
    self.assertIn("serving_default", self.bundle.signatures)
    sig = self.bundle.signatures["serving_default"]
    self.assertEqual(sig.method_name, "tensorflow/serving/predict")
    self.assertEqual(sig.inputs["x"].tf_dtype, types_pb2.DT_FLOAT)
    self.assertEqual(sig.inputs["x"].shape, (-1,))
    self.assertEqual(
        self.bundle.signatures["classify_x_to_y"].method_name,
        "tensorflow/serving/classify",
    )

  def test_predict_default_signature(self):
    response = self._predict(
        self._request(x=np.array([1.0, 2.0, 5.0], np.float32))
    )
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    np.testing.assert_allclose(
        tensor_codec.tensor_proto_to_ndarray(response.outputs["y"]),
        [2.5, 3.0, 4.5],
    )
    self.assertEqual(list(response.outputs["y"].float_val), [2.5, 3.0, 4.5])

  def test_tensor_content_output(self):
    response = self._predict(
        self._request(x=np.array([1.0], np.float32)), use_tensor_content=True
    )
    self.assertEmpty(response.outputs["y"].float_val)
    self.assertNotEmpty(response.outputs["y"].tensor_content)

  def test_output_filter(self):
    request = self._request("two_outputs", x=np.array([2.0], np.float32))
    request.output_filter.append("y2")
    response = self._predict(request)
    self.assertEqual(set(response.outputs), {"y2"})
    self.assertEqual(list(response.outputs["y2"].float_val), [4.0])

  def test_unknown_signature_is_failed_precondition(self):
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(self._request("nope", x=np.array([1.0], np.float32)))
    self.assertEqual(ctx.exception.code, status.Code.FAILED_PRECONDITION)
    self.assertEqual(
        ctx.exception.message, 'Serving signature key "nope" not found.'
    )

  def test_missing_and_extra_inputs(self):
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(self._request("two_inputs", x=np.array([1.0], np.float32)))
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        ctx.exception.message,
        "input size does not match signature: 1!=2 len({x}) != len({x,x2}). "
        "Sent extra: {}. Missing but required: {x2}.",
    )
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(
          self._request(
              x=np.array([1.0], np.float32), z=np.array([1.0], np.float32)
          )
      )
    self.assertIn("Sent extra: {z}.", ctx.exception.message)

  def test_output_filter_errors(self):
    request = self._request("two_outputs", x=np.array([2.0], np.float32))
    request.output_filter.append("bogus")
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(request)
    self.assertEqual(
        ctx.exception.message,
        "output tensor alias not found in signature: bogus Outputs expected "
        "to be in the set {y,y2}.",
    )
    request = self._request("two_outputs", x=np.array([2.0], np.float32))
    request.output_filter.extend(["y", "y"])
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(request)
    self.assertEqual(ctx.exception.message, "duplicate output tensor alias: y")

  def test_wrong_dtype_names_input_and_types(self):
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(self._request(x=np.array([b"a"], object)))
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertStartsWith(
        ctx.exception.message,
        "Expects arg[0] to be float but string is provided",
    )
    self.assertIn("'x'", ctx.exception.message)

  def test_ops_run_in_the_callers_thread_unless_a_pool_was_sized(self):
    self.assertTrue(saved_model_bundle.runs_in_caller_thread(None))
    self.assertTrue(
        saved_model_bundle.runs_in_caller_thread(config_pb2.ConfigProto())
    )
    self.assertFalse(
        saved_model_bundle.runs_in_caller_thread(
            config_pb2.ConfigProto(inter_op_parallelism_threads=4)
        )
    )
    pooled = saved_model_bundle.load_saved_model_bundle(
        self.bundle.export_dir,
        ["serve"],
        config_pb2.ConfigProto(inter_op_parallelism_threads=2),
    )
    self.addCleanup(pooled.close)
    x = {"x": np.array([1.0, 2.0], np.float32)}
    sig = self.bundle.signatures["serving_default"]
    np.testing.assert_array_equal(
        self.bundle.run(sig, x)["y"],
        pooled.run(pooled.signatures["serving_default"], x)["y"],
    )

  def test_rank_the_ops_accept_is_computed(self):
    # Upstream feeds the tensor as sent; y = 0.5 * x + 2 is elementwise, so
    # a [2, 2] x computes although the signature declares [?].
    response = self._predict(self._request(x=np.ones((2, 2), np.float32)))
    np.testing.assert_allclose(
        tensor_codec.tensor_proto_to_ndarray(response.outputs["y"]),
        np.full((2, 2), 2.5),
    )

  def test_shape_tensorflow_rejects_keeps_its_message_then_hint(self):
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    export_dir = _export_matmul(os.path.join(tmp, "1"))
    bundle = saved_model_bundle.load_saved_model_bundle(export_dir, ["serve"])
    self.addCleanup(bundle.close)
    sig = bundle.signatures["serving_default"]
    np.testing.assert_allclose(
        bundle.run(sig, {"x": np.ones((3, 2), np.float32)})["y"],
        np.full((3, 1), 2.0),
    )
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(sig, {"x": np.ones((3,), np.float32)})
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    # TensorFlow's own words first (MatMul's, which differ between its oneDNN
    # and Eigen kernels, so asked of TensorFlow here), then which input
    # differs.
    code, message = session_oracle.run_error(
        export_dir, "serving_default", {"x": np.ones((3,), np.float32)}
    )
    self.assertEqual(code, status.Code.INVALID_ARGUMENT)
    self.assertStartsWith(ctx.exception.message, message)
    self.assertTrue(
        ctx.exception.message.endswith(
            "(input 'x' has shape [3], the signature declares [?,2])"
        ),
        ctx.exception.message,
    )

  def test_unparsable_tensor_is_upstream_message(self):
    request = self._request(x=np.array([1.0, 2.0], np.float32))
    request.inputs["x"].ClearField("float_val")
    request.inputs["x"].tensor_content = b"\x00\x01\x02"  # Not 2 floats.
    with self.assertRaises(status.ServingError) as ctx:
      self._predict(request)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(ctx.exception.message, "tensor parsing error: x")

  def test_corrupt_saved_model_is_data_loss(self):
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    os.makedirs(os.path.join(tmp, "1"))
    with open(os.path.join(tmp, "1", "saved_model.pb"), "wb") as f:
      f.write(b"\x0a\xff\xff garbage")
    with self.assertRaises(status.ServingError) as ctx:
      saved_model_bundle.load_saved_model_bundle(
          os.path.join(tmp, "1"), ["serve"]
      )
    self.assertEqual(ctx.exception.code, status.Code.DATA_LOSS)
    self.assertEqual(
        ctx.exception.message,
        f"Can't parse {os.path.join(tmp, '1', 'saved_model.pb')} as binary "
        "proto",
    )

  def test_missing_tags_is_not_found(self):
    with self.assertRaises(status.ServingError) as ctx:
      saved_model_bundle.load_saved_model_bundle(
          self.bundle.export_dir, ["gpu"]
      )
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)


def _export_matmul(export_dir: str) -> str:
  """y = x @ ones([2, 1]), x float [?, 2]: an op that checks its shapes."""
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 2], name="x")
    y = tf.matmul(x, tf.ones([2, 1]), name="y")
    sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
        {"x": x}, {"y": y}
    )
    with tf.compat.v1.Session(graph=graph) as session:
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map={"serving_default": sig}
      )
      builder.save()
  return export_dir


if __name__ == "__main__":
  absltest.main()
