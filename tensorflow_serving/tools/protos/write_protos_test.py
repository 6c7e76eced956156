"""write_protos: the written tree compiles back to the wheels' descriptors."""

from __future__ import annotations

import os
import subprocess

from absl.testing import absltest

from tensorflow_serving.test_util import binaries
from tensorflow_serving.tools.protos import protoc_util
from tensorflow_serving.tools.protos import wheel_descriptors
from tensorflow_serving.tools.protos import write_protos

_PACKAGE = "tensorflow_serving/tools/protos"
# Files the brief names, to catch a closure that silently shrinks.
_EXPECTED = (
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow_serving/config/model_server_config.proto",
    "tensorflow/core/framework/tensor.proto",
    "tensorflow/core/framework/tensor_shape.proto",
    "tensorflow/core/framework/types.proto",
    "tensorflow/core/protobuf/meta_graph.proto",
    "tensorflow/core/example/example.proto",
    "tensorflow/core/example/feature.proto",
)


def _tree(target: str, include_well_known: bool) -> str:
  """The proto_sources output under Bazel, else one written here."""
  root = binaries.runfiles_root()
  if root:
    path = os.path.join(root, binaries.WORKSPACE_NAME, _PACKAGE, target)
    if os.path.isdir(path):
      return path
  path = os.path.join(binaries.test_tmpdir(), target)
  write_protos.write_tree(path, write_protos.render_all(include_well_known))
  return path


def _proto_files(tree: str) -> set[str]:
  out = set()
  for directory, _, names in os.walk(tree):
    for name in names:
      if name.endswith(".proto"):
        out.add(os.path.relpath(os.path.join(directory, name), tree))
  return out


def _read_all(tree: str) -> dict[str, str]:
  out = {}
  for name in _proto_files(tree):
    with open(os.path.join(tree, name), encoding="utf-8") as f:
      out[name] = f.read()
  return out


class WriteProtosTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.wheel = {
        f.name: f for f in wheel_descriptors.collect(include_well_known=True)
    }
    cls.tree = _tree("tf_serving_protos", include_well_known=False)
    cls.files = _proto_files(cls.tree)

  def assert_round_trip(self, tree: str, files: set[str]) -> None:
    compiled = protoc_util.compile_files(tree, sorted(files))
    for name in sorted(files):
      self.assertMultiLineEqual(
          str(protoc_util.normalized(self.wheel[name].proto)),
          str(protoc_util.normalized(compiled[name])),
          name,
      )

  def test_tree_is_the_apis_and_everything_they_import(self):
    expected = {
        name
        for name in self.wheel
        if not name.startswith(wheel_descriptors.WELL_KNOWN_PREFIX)
    }
    self.assertEqual(self.files, expected)
    for name in _EXPECTED:
      self.assertIn(name, self.files)
    for module in wheel_descriptors.api_modules():
      self.assertIn(module.DESCRIPTOR.name, self.files)

  def test_every_file_compiles_back_to_the_wheels_descriptor(self):
    self.assert_round_trip(self.tree, self.files)

  def test_well_known_types_on_request(self):
    tree = _tree(
        "tf_serving_protos_with_well_known_types", include_well_known=True
    )
    files = _proto_files(tree)
    self.assertEqual(files, set(self.wheel))
    self.assertIn("google/protobuf/any.proto", files)
    self.assert_round_trip(tree, files)

  def test_sources_read_like_upstream(self):
    sources = _read_all(self.tree)
    service = sources["tensorflow_serving/apis/prediction_service.proto"]
    self.assertIn('import "tensorflow_serving/apis/predict.proto";\n', service)
    self.assertIn(
        "service PredictionService {\n"
        "  rpc Classify(ClassificationRequest) returns"
        " (ClassificationResponse);\n",
        service,
    )
    self.assertIn(
        "  rpc Predict(PredictRequest) returns (PredictResponse);\n", service
    )
    predict = sources["tensorflow_serving/apis/predict.proto"]
    self.assertIn("  map<string, TensorProto> inputs = 2;\n", predict)
    self.assertIn("package tensorflow.serving;\n", predict)
    tensor = sources["tensorflow/core/framework/tensor.proto"]
    self.assertIn("  repeated float float_val = 5 [packed = true];\n", tensor)
    self.assertIn('option java_package = "org.tensorflow.framework";\n', tensor)
    serving = self.wheel["tensorflow_serving/apis/predict.proto"]
    self.assertIn(
        f"({serving.distribution} {serving.version})", predict.splitlines()[1]
    )

  def test_bazel_run_writes_the_same_tree(self):
    workdir = binaries.test_tmpdir()
    env = binaries.subprocess_env()
    env["BUILD_WORKING_DIRECTORY"] = workdir
    command = binaries.binary_command(
        _PACKAGE, "write_protos", "tensorflow_serving.tools.protos.write_protos"
    )
    result = subprocess.run(
        [*command, "out/protos"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    out = os.path.join(workdir, "out", "protos")
    self.assertIn(
        f"wrote {len(self.files)} .proto files under {out}", result.stdout
    )
    self.assertEqual(_read_all(out), _read_all(self.tree))

  def test_out_dir_is_required(self):
    command = binaries.binary_command(
        _PACKAGE, "write_protos", "tensorflow_serving.tools.protos.write_protos"
    )
    result = subprocess.run(
        command,
        env=binaries.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    self.assertEqual(result.returncode, 1)
    self.assertIn("usage: write_protos OUT_DIR", result.stderr)


if __name__ == "__main__":
  absltest.main()
