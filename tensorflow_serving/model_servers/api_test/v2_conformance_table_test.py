"""docs/v2_conformance.md is the page v2_conformance renders.

v2_conformance_test checks every row's answer against the real server; this
fast check keeps the committed page in step with the cases without one.
"""

from __future__ import annotations

import os

from absl.testing import absltest

from tensorflow_serving.model_servers.api_test import (
    v2_conformance as conformance,
)
from tensorflow_serving.model_servers.test_util import binaries


class V2ConformanceTableTest(absltest.TestCase):

  def test_committed_page_is_the_generated_one(self):
    path = os.path.join(binaries.repo_root(), conformance.DOC_PATH)
    with open(path, encoding="utf-8") as f:
      committed = f.read()
    self.assertEqual(
        committed,
        conformance.expected_page(),
        "regenerate it: python -m "
        "tensorflow_serving.model_servers.api_test.v2_conformance > "
        + conformance.DOC_PATH,
    )


if __name__ == "__main__":
  absltest.main()
