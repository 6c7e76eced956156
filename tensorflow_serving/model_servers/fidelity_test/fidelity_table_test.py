"""docs/fidelity.md's table is exactly what the fidelity suites produce.

A table edited by hand, or left behind by a change to a suite, fails here
with the command that rewrites it.
"""

from __future__ import annotations

import os

from absl.testing import absltest

from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.model_servers.fidelity_test import fidelity_table
from tensorflow_serving.model_servers.test_util import binaries

PAGE = os.path.join("docs", "fidelity.md")


def _page_path() -> str:
  root = binaries.runfiles_root()
  if root:
    path = os.path.join(root, binaries.WORKSPACE_NAME, PAGE)
    if os.path.exists(path):
      return path
  return os.path.join(binaries.repo_root(), PAGE)


class FidelityTableTest(absltest.TestCase):

  def test_committed_table_is_the_generated_one(self):
    with open(_page_path(), encoding="utf-8") as f:
      committed = fidelity_table.generated_block(f.read())
    rows = fidelity_table.run_suites()
    self.assertEqual([r for r in rows if not r.ok], [])
    generated = fidelity.markdown(rows)
    self.assertEqual(
        committed,
        generated,
        "docs/fidelity.md differs from the suites' table; rewrite it with "
        "bazel run //tensorflow_serving/model_servers/fidelity_test:"
        'fidelity_table -- --update="$PWD/docs/fidelity.md"',
    )

  def test_block_markers_round_trip(self):
    page = f"intro\n{fidelity_table.BEGIN}old\n{fidelity_table.END}outro\n"
    updated = fidelity_table.with_table(page, "new\n")
    self.assertEqual(fidelity_table.generated_block(updated), "new\n")
    self.assertTrue(updated.startswith("intro\n"))
    self.assertTrue(updated.endswith("outro\n"))


if __name__ == "__main__":
  absltest.main()
