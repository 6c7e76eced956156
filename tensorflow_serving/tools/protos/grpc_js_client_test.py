"""grpc-js over the written .proto files against the real server.

@grpc/proto-loader reads write_protos' output and @grpc/grpc-js calls
Predict, GetModelMetadata and GetModelStatus, through grpc_js_client.js (the
example docs/grpc_api.md points to), on half_plus_two (y = 0.5 * x + 2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from absl.testing import absltest

from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.tools.protos import write_protos

_PACKAGE = "tensorflow_serving/tools/protos"
_MODEL = "half"


def _runfile(name: str) -> str:
  """`name` in this package: from the runfiles, else the source tree."""
  root = binaries.runfiles_root()
  if root:
    path = os.path.join(root, binaries.WORKSPACE_NAME, _PACKAGE, name)
    if os.path.exists(path):
      return path
  return os.path.join(binaries.repo_root(), _PACKAGE, name)


def _proto_tree() -> str:
  path = _runfile("tf_serving_protos")
  if os.path.isdir(path):
    return path
  path = os.path.join(binaries.test_tmpdir(), "protos")
  write_protos.write_tree(path, write_protos.render_all(False))
  return path


class GrpcJsClientTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.node = shutil.which("node")
    if cls.node is None:
      raise RuntimeError("node is missing: run tools/setup.sh")
    cls.node_path = os.path.join(
        binaries.repo_root(), "tools", "node", "node_modules"
    )
    if not os.path.isdir(os.path.join(cls.node_path, "@grpc", "grpc-js")):
      raise RuntimeError(f"no @grpc/grpc-js in {cls.node_path}: run setup")
    cls.protos = _proto_tree()
    cls.base_path = os.path.join(binaries.test_tmpdir(), _MODEL)
    half_plus_two.export_half_plus_two_tf1(os.path.join(cls.base_path, "1"))
    cls._server_context = model_server.running_server(
        cls.server_flags(), rest=False
    )
    cls.server = cls._server_context.__enter__()

  @classmethod
  def server_flags(cls, *extra: str) -> list[str]:
    return [
        f"--model_name={_MODEL}",
        f"--model_base_path={cls.base_path}",
        *extra,
    ]

  @classmethod
  def tearDownClass(cls):
    cls._server_context.__exit__(None, None, None)
    super().tearDownClass()

  def run_client(
      self, *flags: str, server: model_server.ModelServer | None = None
  ) -> subprocess.CompletedProcess:
    env = dict(os.environ, NODE_PATH=self.node_path)
    server = server or self.server
    return subprocess.run(
        [
            self.node,
            _runfile("grpc_js_client.js"),
            f"--protos={self.protos}",
            f"--server={server.grpc_address}",
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

  def test_predict_metadata_and_status(self):
    result = self.run_client(f"--model={_MODEL}", "--input=x", "--values=1,2,5")
    self.assertEqual(result.returncode, 0, result.stderr)
    answers = {}
    for line in result.stdout.splitlines():
      answer = json.loads(line)
      answers[answer["call"]] = answer["response"]
    self.assertEqual(
        sorted(answers), ["GetModelMetadata", "GetModelStatus", "Predict"]
    )

    predict = answers["Predict"]
    self.assertEqual(
        predict["outputs"],
        {
            "y": {
                "dtype": "DT_FLOAT",
                "shape": [3],
                "encoding": "float_val",
                "values": [2.5, 3, 4.5],
            }
        },
    )
    self.assertEqual(predict["model_spec"]["name"], _MODEL)
    self.assertEqual(predict["model_spec"]["version"], {"value": "1"})
    self.assertEqual(predict["model_spec"]["signature_name"], "serving_default")

    metadata = answers["GetModelMetadata"]
    self.assertEqual(
        metadata["type"],
        "type.googleapis.com/tensorflow.serving.SignatureDefMap",
    )
    self.assertEqual(
        metadata["signature_keys"],
        [
            "classify_x_to_y",
            "regress_x_to_y",
            "serving_default",
            "two_inputs",
            "two_outputs",
        ],
    )
    serving_default = metadata["signature_def"]["serving_default"]
    self.assertEqual(
        serving_default["method_name"], "tensorflow/serving/predict"
    )
    self.assertEqual(serving_default["inputs"]["x"]["name"], "x:0")
    self.assertEqual(serving_default["inputs"]["x"]["dtype"], "DT_FLOAT")
    self.assertEqual(
        serving_default["inputs"]["x"]["tensor_shape"]["dim"],
        [{"size": "-1", "name": ""}],
    )
    self.assertEqual(serving_default["outputs"]["y"]["dtype"], "DT_FLOAT")

    self.assertEqual(
        answers["GetModelStatus"],
        {
            "model_version_status": [
                {
                    "version": "1",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        },
    )

  def test_predict_outputs_as_tensor_content(self):
    flags = self.server_flags("--enable_serialization_as_tensor_content")
    with model_server.running_server(flags, rest=False) as server:
      result = self.run_client(
          f"--model={_MODEL}", "--input=x", "--values=-4,0,3", server=server
      )
    self.assertEqual(result.returncode, 0, result.stderr)
    predict = json.loads(result.stdout.splitlines()[0])
    self.assertEqual(predict["call"], "Predict")
    self.assertEqual(
        predict["response"]["outputs"]["y"],
        {
            "dtype": "DT_FLOAT",
            "shape": [3],
            "encoding": "tensor_content",
            "values": [0, 2, 3.5],
        },
    )

  def test_errors_carry_the_grpc_status(self):
    result = self.run_client("--model=no_such_model")
    self.assertEqual(result.returncode, 1)
    self.assertIn("no_such_model", result.stderr)
    self.assertIn("(gRPC code 5)", result.stderr)  # NOT_FOUND.


if __name__ == "__main__":
  absltest.main()
