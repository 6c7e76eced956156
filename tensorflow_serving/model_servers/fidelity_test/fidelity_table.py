"""Runs every fidelity suite and writes their rows as one markdown table.

  bazel run //tensorflow_serving/model_servers/fidelity_test:fidelity_table \
    -- --out=/tmp/fidelity.md

The table is the README's "Fidelity" section: model, request, upstream's
answer and ours, for every request the suites send. Failing rows are part
of the table; the exit status is 1 when any row differs.
"""

from __future__ import annotations

import sys
import unittest

from absl import app
from absl import flags

from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.model_servers.fidelity_test import (
    half_plus_two_batching_test,
)
from tensorflow_serving.model_servers.fidelity_test import half_plus_two_test
from tensorflow_serving.model_servers.fidelity_test import tf2_keras_test
from tensorflow_serving.model_servers.fidelity_test import tflite_test

_OUT = flags.DEFINE_string(
    "out", "", "markdown file to write (default: stdout)"
)

SUITES = (
    half_plus_two_test.HalfPlusTwoTest,
    half_plus_two_batching_test.HalfPlusTwoBatchingTest,
    tf2_keras_test.Tf2KerasTest,
    tflite_test.TfLiteTest,
)


def main(argv: list[str]) -> int:
  del argv
  loader = unittest.TestLoader()
  suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in SUITES)
  unittest.TextTestRunner(stream=sys.stderr, verbosity=0).run(suite)
  rows = sorted(
      fidelity.ROWS,
      key=lambda r: ([c.SUITE for c in SUITES].index(r.suite), r.model),
  )
  text = fidelity.markdown(rows)
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      f.write(text)
    print(f"wrote {len(rows)} rows to {_OUT.value}")
  else:
    sys.stdout.write(text)
  return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
  app.run(main)
