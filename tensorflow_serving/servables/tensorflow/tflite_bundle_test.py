"""TfLiteBundle: signatures, pooled interpreters, errors, loader selection."""

from __future__ import annotations

import concurrent.futures
import os
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import saved_model_loader
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.servables.tensorflow import tflite_bundle
from tensorflow_serving.servables.tensorflow import tflite_signature_defs
from tensorflow_serving.servables.tensorflow import warmup
from tensorflow_serving.servables.tensorflow.test_util import tflite_models
from tensorflow_serving.util import status


def _tmpdir() -> str:
  return tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))


def _predict(bundle, signature: str = "", output_filter=(), **inputs):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "m"
  request.model_spec.signature_name = signature
  for alias, value in inputs.items():
    request.inputs[alias].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.asarray(value))
    )
  request.output_filter.extend(output_filter)
  response = predict_pb2.PredictResponse()
  predict_util.run_predict(bundle, request, response)
  return response.model_spec.signature_name, {
      alias: tensor_codec.tensor_proto_to_ndarray(proto)
      for alias, proto in response.outputs.items()
  }


def _f32(*values) -> np.ndarray:
  return np.array(values, np.float32)


class TfLiteBundleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = _tmpdir()
    cls.export_dir = tflite_models.export_half_plus_two(os.path.join(tmp, "1"))
    cls.bundle = tflite_bundle.load_tflite_bundle(
        cls.export_dir, num_pools=2, num_interpreters_per_pool=2
    )
    cls.saved_model = saved_model_bundle.load_saved_model_bundle(
        cls.export_dir, ["serve"]
    )

  @classmethod
  def tearDownClass(cls):
    cls.bundle.close()
    cls.saved_model.close()
    super().tearDownClass()

  def test_exposes_the_models_signature_defs(self):
    self.assertEqual(
        sorted(self.bundle.signatures),
        ["serving_default", "two_inputs", "two_outputs"],
    )
    self.assertEqual(
        sorted(self.bundle.signatures), sorted(self.saved_model.signatures)
    )
    sig = self.bundle.signatures["two_inputs"]
    self.assertEqual(sig.method_name, "tensorflow/serving/predict")
    self.assertEqual(list(sig.inputs), ["x", "x2"])
    self.assertEqual(list(sig.outputs), ["y", "y2"])
    self.assertEqual(sig.inputs["x"].tf_dtype, types_pb2.DT_FLOAT)
    self.assertEqual(sig.inputs["x"].shape, (-1,))
    self.assertIsNone(self.bundle.meta_graph)
    self.assertEqual(self.bundle.export_dir, self.export_dir)
    self.assertIs(
        signature_lib.resolve(
            self.bundle.signatures, "", signature_lib.Api.PREDICT
        ),
        self.bundle.signatures["serving_default"],
    )

  def test_predicts_each_signature_like_the_saved_model(self):
    x = _f32(1.0, 2.0, 5.0)
    cases = [
        ("", {"x": x}),
        ("two_outputs", {"x": x}),
        ("two_inputs", {"x": x, "x2": _f32(4.0, 0.0, -2.0)}),
    ]
    for signature, inputs in cases:
      with self.subTest(signature):
        key, got = _predict(self.bundle, signature, **inputs)
        want_key, want = _predict(self.saved_model, signature, **inputs)
        self.assertEqual(key, want_key)
        self.assertEqual(sorted(got), sorted(want))
        for alias in want:
          np.testing.assert_allclose(got[alias], want[alias])
    _, got = _predict(self.bundle, "two_inputs", x=x, x2=_f32(4.0, 0.0, -2.0))
    np.testing.assert_allclose(got["y"], [2.5, 3.0, 4.5])
    np.testing.assert_allclose(got["y2"], [5.0, 3.0, 2.0])

  def test_output_filter(self):
    _, got = _predict(self.bundle, "two_outputs", ("y2",), x=_f32(2.0))
    self.assertEqual(list(got), ["y2"])
    np.testing.assert_allclose(got["y2"], [4.0])
    out = self.bundle.run(
        self.bundle.signatures["two_outputs"], {"x": _f32(2.0)}, ("y2", "y")
    )
    self.assertEqual(list(out), ["y2", "y"])

  def test_errors_match_saved_model_bundle(self):
    x = _f32(1.0)
    cases = {
        "extra input": ("", {"x": x, "bogus": x}, ()),
        "missing input": ("two_inputs", {"x": x}, ()),
        "no inputs": ("", {}, ()),
        "unknown output": ("", {"x": x}, ("nope",)),
        "duplicate output": ("two_outputs", {"x": x}, ("y", "y")),
        "wrong dtype": ("", {"x": np.array([1], np.int32)}, ()),
        "wrong dtype, second input": (
            "two_inputs",
            {"x": x, "x2": np.array([1.0])},
            (),
        ),
        "strings for floats": ("", {"x": np.array([b"a"], object)}, ()),
    }
    for name, (key, inputs, output_filter) in cases.items():
      with self.subTest(name):
        with self.assertRaises(status.ServingError) as want:
          self.saved_model.run(
              signature_lib.resolve(
                  self.saved_model.signatures, key, signature_lib.Api.PREDICT
              ),
              inputs,
              output_filter,
          )
        with self.assertRaises(status.ServingError) as got:
          self.bundle.run(
              signature_lib.resolve(
                  self.bundle.signatures, key, signature_lib.Api.PREDICT
              ),
              inputs,
              output_filter,
          )
        self.assertEqual(got.exception.code, status.Code.INVALID_ARGUMENT)
        self.assertEqual(
            (got.exception.code, got.exception.message),
            (want.exception.code, want.exception.message),
        )

  def test_rank_the_ops_accept_is_computed_as_saved_model(self):
    # No static shape check on either runtime: [2, 1] into a [?] input.
    x = np.ones([2, 1], np.float32)
    want = self.saved_model.run(
        self.saved_model.signatures["serving_default"], {"x": x}
    )
    got = self.bundle.run(self.bundle.signatures["serving_default"], {"x": x})
    np.testing.assert_allclose(got["y"], want["y"])
    self.assertEqual(got["y"].shape, (2, 1))

  def test_unknown_signature_is_failed_precondition(self):
    with self.assertRaises(status.ServingError) as ctx:
      _predict(self.bundle, "nope", x=_f32(1.0))
    self.assertEqual(ctx.exception.code, status.Code.FAILED_PRECONDITION)
    self.assertEqual(
        ctx.exception.message, 'Serving signature key "nope" not found.'
    )

  def test_resizes_to_each_batch_size(self):
    bundle = tflite_bundle.load_tflite_bundle(
        self.export_dir, num_pools=1, num_interpreters_per_pool=1
    )
    self.addCleanup(bundle.close)
    sig = bundle.signatures["serving_default"]
    for rows in (1, 5, 5, 1, 0, 3):
      with self.subTest(rows=rows):
        x = np.arange(rows, dtype=np.float32)
        np.testing.assert_allclose(
            bundle.run(sig, {"x": x})["y"], 0.5 * x + 2.0
        )
    self.assertEqual(bundle.num_interpreters_created, 1)

  def test_concurrent_requests_each_get_their_own_result(self):
    sig = self.bundle.signatures["two_inputs"]
    self.assertEqual(self.bundle.num_interpreters, 4)

    def request(i: int):
      rows = 1 + i % 7
      x = np.full([rows], float(i), np.float32)
      x2 = np.arange(rows, dtype=np.float32) * i
      for _ in range(20):
        out = self.bundle.run(sig, {"x": x, "x2": x2})
        np.testing.assert_allclose(out["y"], 0.5 * x + 2.0)
        np.testing.assert_allclose(out["y2"], 0.5 * x2 + 3.0)
      return i

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
      self.assertEqual(sorted(pool.map(request, range(64))), list(range(64)))
    self.assertBetween(self.bundle.num_interpreters_created, 1, 4)

  def test_run_after_close_is_unavailable(self):
    bundle = tflite_bundle.load_tflite_bundle(self.export_dir, 1, 1)
    bundle.close()
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(bundle.signatures["serving_default"], {"x": _f32(1.0)})
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)


class SynthesizedSignatureTest(absltest.TestCase):

  def test_model_without_signature_defs_gets_serving_default(self):
    export_dir = tflite_models.export_half_plus_two(
        os.path.join(_tmpdir(), "1"), signature_defs=False
    )
    bundle = tflite_bundle.load_tflite_bundle(export_dir, 1, 1)
    self.addCleanup(bundle.close)
    self.assertEqual(list(bundle.signatures), ["serving_default"])
    sig = bundle.signatures["serving_default"]
    # As upstream: aliases are tensor names without their ":0".
    ((in_alias, in_spec),) = sig.inputs.items()
    ((out_alias, out_spec),) = sig.outputs.items()
    self.assertEqual(in_spec.tensor_name, in_alias + ":0")
    self.assertEqual(out_spec.tensor_name, out_alias + ":0")
    self.assertEqual(sig.proto.method_name, "tensorflow/serving/predict")
    self.assertEqual(sig.proto.inputs[in_alias].name, in_spec.tensor_name)
    self.assertEqual(sig.proto.inputs[in_alias].dtype, types_pb2.DT_FLOAT)
    for rows in (1, 5, 2):
      x = np.arange(rows, dtype=np.float32)
      key, out = _predict(bundle, "", **{in_alias: x})
      self.assertEqual(key, "serving_default")
      np.testing.assert_allclose(out[out_alias], 0.5 * x + 2.0)
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(sig, {"x": x})
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertStartsWith(
        ctx.exception.message, "input size does not match signature"
    )


class TfLiteModelsTest(absltest.TestCase):

  def test_string_tensors(self):
    bundle = tflite_bundle.load_tflite_bundle(
        tflite_models.export_string_gather(_tmpdir()), 1, 1
    )
    self.addCleanup(bundle.close)
    sig = bundle.signatures["serving_default"]
    self.assertEqual(sig.inputs["s"].tf_dtype, types_pb2.DT_STRING)
    self.assertEqual(sig.outputs["picked"].tf_dtype, types_pb2.DT_STRING)
    _, out = _predict(
        bundle,
        s=np.array([b"a", b"\xff\x00b", b""], object),
        idx=np.array([1, 2, 0, 1], np.int32),
    )
    self.assertEqual(
        out["picked"].tolist(), [b"\xff\x00b", b"", b"a", b"\xff\x00b"]
    )

  def test_invoke_failure_is_internal(self):
    bundle = tflite_bundle.load_tflite_bundle(
        tflite_models.export_string_gather(_tmpdir()), 1, 1
    )
    self.addCleanup(bundle.close)
    sig = bundle.signatures["serving_default"]
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(
          sig, {"s": np.array([b"a"], object), "idx": np.array([3], np.int32)}
      )
    self.assertEqual(ctx.exception.code, status.Code.INTERNAL)
    self.assertStartsWith(
        ctx.exception.message, "Failed to invoke TfLite interpreter"
    )
    # The interpreter went back to the pool and still works.
    out = bundle.run(
        sig, {"s": np.array([b"a"], object), "idx": np.array([0], np.int32)}
    )
    self.assertEqual(out["picked"].tolist(), [b"a"])

  def test_fixed_batch_model_accepts_other_batch_sizes(self):
    bundle = tflite_bundle.load_tflite_bundle(
        tflite_models.export_fixed_batch(_tmpdir()), 1, 1
    )
    self.addCleanup(bundle.close)
    sig = bundle.signatures["serving_default"]
    self.assertEqual(
        [d.size for d in sig.proto.inputs["x"].tensor_shape.dim], [1, 2]
    )
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_allclose(bundle.run(sig, {"x": x})["y"], 2 * x)
    # Any rank the ops take: the interpreter is resized to it, as upstream.
    x = np.ones([3, 3, 3], np.float32)
    np.testing.assert_allclose(bundle.run(sig, {"x": x})["y"], 2 * x)

  def test_metadata_signature_defs_name_inputs_by_key(self):
    bundle = tflite_bundle.load_tflite_bundle(
        tflite_models.export_half_plus_two_with_metadata_signature_defs(
            _tmpdir()
        ),
        1,
        1,
    )
    self.addCleanup(bundle.close)
    self.assertEqual(list(bundle.signatures), ["serving_default"])
    sig = bundle.signatures["serving_default"]
    # Metadata shows the SignatureDef's keys over the interpreter's tensors.
    self.assertEqual(list(sig.proto.inputs), ["x"])
    self.assertEqual(sig.proto.inputs["x"].name, "tflite_input")
    self.assertEqual(list(sig.proto.outputs), ["y"])
    np.testing.assert_allclose(
        bundle.run(sig, {"x": np.array([[2.0], [3.0]], np.float32)})["y"],
        [[3.0], [3.5]],
    )
    # A rank-1 batch into the [?,1] input computes, as upstream.
    np.testing.assert_allclose(
        bundle.run(sig, {"x": np.array([2.0, 3.0, 4.0], np.float32)})["y"],
        [3.0, 3.5, 4.0],
    )
    with self.assertRaises(status.ServingError) as ctx:
      bundle.run(sig, {"tflite_input": np.array([2.0], np.float32)})
    self.assertIn("Sent extra: {tflite_input}", ctx.exception.message)

  def test_metadata_signature_def_naming_unknown_tensor_fails_load(self):
    export_dir = (
        tflite_models.export_half_plus_two_with_metadata_signature_defs(
            _tmpdir()
        )
    )
    path = tflite_bundle.tflite_model_path(export_dir)
    with open(path, "rb") as f:
      content = f.read()
    sig = tflite_signature_defs.read(content)["serving_default"]
    sig.inputs["x"].name = "no_such_tensor:0"
    with open(path, "wb") as f:
      f.write(tflite_signature_defs.write(content, {"serving_default": sig}))
    with self.assertRaises(status.ServingError) as ctx:
      tflite_bundle.load_tflite_bundle(export_dir, 1, 1)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        ctx.exception.message,
        "Signature input x references an unknown tensor: no_such_tensor:0",
    )

  def test_bad_model_file_fails_the_load(self):
    export_dir = _tmpdir()
    for content, code in (
        (b"not a flatbuffer" * 4, status.Code.INVALID_ARGUMENT),
        (b"", status.Code.INVALID_ARGUMENT),
    ):
      with open(tflite_bundle.tflite_model_path(export_dir), "wb") as f:
        f.write(content)
      with self.assertRaises(status.ServingError) as ctx:
        tflite_bundle.load_tflite_bundle(export_dir)
      self.assertEqual(ctx.exception.code, code)

  def test_missing_model_file_is_not_found(self):
    with self.assertRaises(status.ServingError) as ctx:
      tflite_bundle.load_tflite_bundle(_tmpdir())
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)


class LoaderTest(absltest.TestCase):

  def _load(self, export_dir: str, **config):
    loader = saved_model_loader.SavedModelLoader(
        servable_id_lib.ServableId("m", 1),
        export_dir,
        saved_model_loader.SavedModelConfig(**config),
    )
    loader.load()
    self.addCleanup(loader.unload)
    return loader.servable()

  def test_tflite_only_with_the_flag_and_the_file(self):
    both = tflite_models.export_half_plus_two(os.path.join(_tmpdir(), "1"))
    saved_model_only = tflite_models.export_half_plus_two(
        os.path.join(_tmpdir(), "1")
    )
    os.remove(tflite_bundle.tflite_model_path(saved_model_only))

    self.assertIsInstance(self._load(both), saved_model_bundle.SavedModelBundle)
    self.assertIsInstance(
        self._load(saved_model_only, prefer_tflite_model=True),
        saved_model_bundle.SavedModelBundle,
    )
    bundle = self._load(
        both,
        prefer_tflite_model=True,
        num_tflite_pools=3,
        num_tflite_interpreters_per_pool=2,
    )
    self.assertIsInstance(bundle, tflite_bundle.TfLiteBundle)
    self.assertEqual(bundle.num_interpreters, 6)
    _, out = _predict(bundle, x=_f32(4.0))
    np.testing.assert_allclose(out["y"], [4.0])

  def test_warmup_runs_on_the_tflite_bundle(self):
    export_dir = tflite_models.export_half_plus_two(
        os.path.join(_tmpdir(), "1"), saved_model=False
    )
    path = warmup.warmup_path(export_dir)
    os.makedirs(os.path.dirname(path))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "m"
    log.predict_log.request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(_f32(1.0))
    )
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(log.SerializeToString())
    bundle = self._load(export_dir, prefer_tflite_model=True)
    self.assertIsInstance(bundle, tflite_bundle.TfLiteBundle)

    bad = prediction_log_pb2.PredictionLog()
    bad.CopyFrom(log)
    bad.predict_log.request.inputs["x"].CopyFrom(
        tensor_codec.ndarray_to_tensor_proto(np.array([1], np.int32))
    )
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(bad.SerializeToString())
    with self.assertRaises(status.ServingError) as ctx:
      self._load(export_dir, prefer_tflite_model=True)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)


if __name__ == "__main__":
  absltest.main()
