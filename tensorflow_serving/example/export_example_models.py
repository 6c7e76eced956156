"""Exports the models the docs' examples serve, under one base directory.

  bazel run //tensorflow_serving/example:export_example_models -- /tmp/models

writes

  /tmp/models/half/1, /tmp/models/half/2   half_plus_two (y = 0.5 * x + 2),
                                           upstream's getting-started model
  /tmp/models/half_plus_three/123          half_plus_three (y = 0.5 * x + 3),
                                           the model of upstream's REST doc
  /tmp/models/mnist/1                      the tutorial's MNIST softmax model
                                           (skipped with --nomnist)

Versions that exist are left alone, so a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
import os
import shutil
import sys
import tempfile

from absl import app
from absl import flags
import tensorflow as tf

from tensorflow_serving.example import mnist_saved_model
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two

_MNIST = flags.DEFINE_bool(
    "mnist", True, "Also train and export mnist/1 (needs the MNIST data)."
)

USAGE = "Usage: export_example_models [--nomnist] BASE_DIR"


def _publish(
    base: str, name: str, version: int, export: Callable[[str], object]
) -> None:
  """Exports into a hidden directory, then renames it into place."""
  final = os.path.join(base, name, str(version))
  if os.path.exists(final):
    print(f"exists: {final}")
    return
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=os.path.dirname(final))
  try:
    export(os.path.join(tmp, "export"))
    os.rename(os.path.join(tmp, "export"), final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  print(f"exported: {final}")


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[1].startswith("-"):
    sys.exit(USAGE)
  base = os.path.abspath(argv[1])
  for version in (1, 2):
    _publish(base, "half", version, half_plus_two.export_upstream_half_plus_two)
  _publish(
      base,
      "half_plus_three",
      123,
      half_plus_two.export_upstream_half_plus_three,
  )
  if _MNIST.value and not os.path.exists(os.path.join(base, "mnist", "1")):
    tf.compat.v1.disable_eager_execution()
    mnist_saved_model.train_and_export(
        os.path.join(base, "mnist"),
        1,
        flags.FLAGS.training_iteration,
        flags.FLAGS.work_dir,
    )
    print(f"exported: {os.path.join(base, 'mnist', '1')}")


if __name__ == "__main__":
  app.run(main)
