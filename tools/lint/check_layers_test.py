"""check_layers fails on an upward import and passes this tree (lint.sh runs it)."""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap

from absl.testing import absltest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import check_layers  # pylint: disable=g-import-not-at-top

_REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


class CheckLayersTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self._tmp = tempfile.TemporaryDirectory()
    self.addCleanup(self._tmp.cleanup)
    self.root = self._tmp.name

  def write(self, relative: str, source: str) -> None:
    path = os.path.join(self.root, "tensorflow_serving", relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      f.write(textwrap.dedent(source))

  def problems(self) -> list[str]:
    return check_layers.check(self.root)

  def test_an_upward_import_fails_with_its_file_and_line(self):
    self.write(
        "core/manager.py",
        """\
        from tensorflow_serving.util import status
        from tensorflow_serving.model_servers import server_core
        """,
    )
    (problem,) = self.problems()
    self.assertTrue(
        problem.startswith("tensorflow_serving/core/manager.py:2: core/"),
        problem,
    )
    self.assertIn("tensorflow_serving.model_servers.server_core", problem)
    self.assertEqual(check_layers.main(["check_layers", self.root]), 1)

  def test_every_upward_form_is_caught(self):
    self.write("util/a.py", "import tensorflow_serving.core.loader\n")
    self.write("util/net/b.py", "from ...servables import servable\n")
    self.write(
        "servables/c.py",
        "def f():\n  from tensorflow_serving.tools.benchmark import wire\n",
    )
    self.write("resources/d.py", "from tensorflow_serving.core import loader\n")
    self.write("model_servers/e.py", "from tensorflow_serving import tools\n")
    self.assertLen(self.problems(), 5)

  def test_same_layer_and_downward_imports_pass(self):
    self.write(
        "servables/tensorflow/bundle.py",
        """\
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.batching import batching_session
        from tensorflow_serving.core import loader
        from tensorflow_serving.resources import resources
        from tensorflow_serving.util import status
        """,
    )
    self.write(
        "tools/x.py", "from tensorflow_serving.model_servers import main\n"
    )
    self.assertEqual(self.problems(), [])
    self.assertEqual(check_layers.main(["check_layers", self.root]), 0)

  def test_only_tests_and_tools_import_test_helpers(self):
    helper = "from tensorflow_serving.test_util import binaries\n"
    self.write("model_servers/server_test.py", helper)
    self.write("model_servers/integration_test/util.py", helper)
    self.write("core/test_util/fake.py", helper)
    self.write("tools/benchmark/run.py", helper)
    self.write("example/client.py", helper)
    self.assertEqual(self.problems(), [])
    self.write("model_servers/server.py", helper)
    self.write(
        "servables/bundle.py",
        "from tensorflow_serving.servables.test_util import models\n",
    )
    problems = self.problems()
    self.assertLen(problems, 2)
    self.assertIn("product code imports test helper", problems[0])

  def test_example_and_test_util_import_anything(self):
    self.write("example/client.py", "from tensorflow_serving.tools import x\n")
    self.write(
        "test_util/fixture.py", "from tensorflow_serving.tools import y\n"
    )
    self.assertEqual(self.problems(), [])

  def test_a_test_is_held_to_its_layer_too(self):
    self.write(
        "servables/bundle_test.py",
        "from tensorflow_serving.model_servers import get_model_metadata_impl\n",
    )
    self.assertLen(self.problems(), 1)

  def test_this_tree_has_no_upward_import(self):
    self.assertEqual(check_layers.check(_REPO), [])


if __name__ == "__main__":
  absltest.main()
