"""Runs mnist_saved_model end to end and checks what it exports."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from tensorflow_serving.example import mnist_test_util

# The source root: the repo, or the runfiles tree under Bazel.
_ROOT = pathlib.Path(os.path.abspath(__file__)).parents[2]
_MODULE = "tensorflow_serving.example.mnist_saved_model"


def _start_export(*args: str) -> subprocess.Popen:
  """Starts the exporter the way a user would, from the source root."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(_ROOT), env.get("PYTHONPATH")) if p
  )
  return subprocess.Popen(
      [sys.executable, "-m", _MODULE, *args],
      cwd=_ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
  )


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
  stdout, stderr = process.communicate()
  return subprocess.CompletedProcess(
      process.args, process.returncode, stdout, stderr
  )


def _export(*args: str) -> subprocess.CompletedProcess:
  return _finish(_start_export(*args))


def _shape(tensor_info) -> list[int]:
  return [d.size for d in tensor_info.tensor_shape.dim]


class MnistSavedModelTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = pathlib.Path(tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()))
    cls.work_dir = tmp / "data"
    cls.test_images, cls.test_labels = mnist_test_util.write_synthetic_mnist(
        cls.work_dir
    )
    cls.base = tmp / "export"
    # Both at once: most of each run is importing TensorFlow.
    started = {
        version: _start_export(
            "--training_iteration=100",
            f"--model_version={version}",
            f"--work_dir={cls.work_dir}",
            str(cls.base),
        )
        for version in (1, 2)
    }
    cls.runs = {v: _finish(p) for v, p in started.items()}

  def _check_ok(self, version: int) -> str:
    run = self.runs[version]
    self.assertEqual(run.returncode, 0, run.stderr)
    return run.stdout

  def test_prints_progress(self):
    out = self._check_ok(1)
    self.assertIn("Training model...", out)
    self.assertRegex(out, r"training accuracy 1\b|training accuracy 0\.9")
    self.assertIn(f"Exporting trained model to {self.base / '1'}", out)
    self.assertIn("Done exporting!", out)

  def test_versions_are_complete_and_side_by_side(self):
    self._check_ok(1)
    self._check_ok(2)
    for version in ("1", "2"):
      path = self.base / version
      self.assertTrue((path / "saved_model.pb").is_file())
      self.assertTrue((path / "variables" / "variables.index").is_file())
      self.assertNotEmpty(list((path / "variables").glob("variables.data-*")))
    # The temporary build directories are gone.
    self.assertCountEqual(os.listdir(self.base), ["1", "2"])

  def test_signatures(self):
    self._check_ok(1)
    saved_model = saved_model_pb2.SavedModel.FromString(
        (self.base / "1" / "saved_model.pb").read_bytes()
    )
    self.assertLen(saved_model.meta_graphs, 1)
    meta_graph = saved_model.meta_graphs[0]
    self.assertEqual(list(meta_graph.meta_info_def.tags), ["serve"])
    signatures = meta_graph.signature_def
    self.assertCountEqual(signatures, ["predict_images", "serving_default"])

    predict = signatures["predict_images"]
    self.assertEqual(predict.method_name, "tensorflow/serving/predict")
    self.assertCountEqual(predict.inputs, ["images"])
    self.assertEqual(predict.inputs["images"].dtype, types_pb2.DT_FLOAT)
    self.assertEqual(_shape(predict.inputs["images"]), [-1, 784])
    self.assertCountEqual(predict.outputs, ["scores"])
    self.assertEqual(predict.outputs["scores"].dtype, types_pb2.DT_FLOAT)
    self.assertEqual(_shape(predict.outputs["scores"]), [-1, 10])

    classify = signatures["serving_default"]
    self.assertEqual(classify.method_name, "tensorflow/serving/classify")
    self.assertCountEqual(classify.inputs, ["inputs"])
    self.assertEqual(classify.inputs["inputs"].dtype, types_pb2.DT_STRING)
    self.assertEqual(_shape(classify.inputs["inputs"]), [-1])
    self.assertCountEqual(classify.outputs, ["classes", "scores"])
    self.assertEqual(classify.outputs["classes"].dtype, types_pb2.DT_STRING)
    self.assertEqual(_shape(classify.outputs["classes"]), [-1, 10])
    self.assertEqual(classify.outputs["scores"].dtype, types_pb2.DT_FLOAT)
    self.assertEqual(_shape(classify.outputs["scores"]), [-1, 10])

  def test_exported_model_serves_both_signatures(self):
    self._check_ok(1)
    model = tf.saved_model.load(str(self.base / "1"))
    images = self.test_images[:8].reshape(8, 784).astype(np.float32) / 255
    scores = model.signatures["predict_images"](images=tf.constant(images))[
        "scores"
    ].numpy()
    self.assertEqual(scores.shape, (8, 10))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(scores.argmax(axis=1), self.test_labels[:8])

    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "x": tf.train.Feature(
                        float_list=tf.train.FloatList(value=image)
                    )
                }
            )
        ).SerializeToString()
        for image in images
    ]
    result = model.signatures["serving_default"](inputs=tf.constant(examples))
    classes = result["classes"].numpy()
    self.assertEqual(classes.shape, (8, 10))
    # Labels come best first, with the matching sorted scores.
    self.assertEqual(
        [int(c) for c in classes[:, 0]], self.test_labels[:8].tolist()
    )
    self.assertCountEqual(classes[0], [str(d).encode() for d in range(10)])
    np.testing.assert_allclose(
        result["scores"].numpy(), -np.sort(-scores, axis=1), rtol=1e-5
    )

  def test_existing_version_is_not_overwritten(self):
    self._check_ok(1)
    pb = self.base / "1" / "saved_model.pb"
    before = pb.read_bytes()
    run = _export(
        "--training_iteration=1",
        "--model_version=1",
        f"--work_dir={self.work_dir}",
        str(self.base),
    )
    self.assertEqual(run.returncode, 1)
    self.assertIn(f"{self.base / '1'} already exists", run.stderr)
    self.assertEqual(pb.read_bytes(), before)
    self.assertFalse([n for n in os.listdir(self.base) if n.startswith(".")])

  def test_usage_without_export_dir(self):
    run = _export("--training_iteration=1")
    self.assertEqual(run.returncode, 1)
    self.assertIn("Usage: mnist_saved_model.py", run.stderr)


if __name__ == "__main__":
  absltest.main()
