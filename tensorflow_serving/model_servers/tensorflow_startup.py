"""Imports TensorFlow at start-up so that only real errors are logged as errors.

On a host without a usable CUDA driver, TensorFlow's CUDA platform logs

    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: ...

at ERROR the first time its platforms initialize (during the import, or the
first device enumeration). For a CPU build a missing driver is expected, so
the import and a first enumeration run with native stderr captured
(util/native_stderr), that line is logged at INFO instead, and every other
line is written back unchanged and in order, also if the import fails. A
CUDA build needs the driver: there the line stays an ERROR.

This module imports no TensorFlow itself, so the supervisor of --num_workers
(which never needs TensorFlow) can share main's imports.
"""

from __future__ import annotations

import re

from absl import logging

from tensorflow_serving.util import native_stderr

NO_CUDA_DRIVER_RE = re.compile(rb"^E\d{4} [^\]]*\] failed call to cuInit: ")


def emit(lines: list[bytes], expect_gpu: bool) -> None:
  """Writes the captured lines back in order; a CPU build's cuInit is INFO."""
  for line in lines:
    if not expect_gpu and NO_CUDA_DRIVER_RE.match(line):
      logging.info(
          "No usable CUDA driver (a CPU build needs none): %s",
          line.split(b"] ", 1)[-1].decode("utf-8", "replace").strip(),
      )
    else:
      native_stderr.write(line)


def _import_and_enumerate() -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf.config.list_physical_devices()


def import_tensorflow(expect_gpu: bool, load=_import_and_enumerate) -> None:
  """Runs `load` (TensorFlow's import and device enumeration) filtered."""
  captured = native_stderr.Captured()
  try:
    with native_stderr.capture() as captured:
      load()
  finally:
    emit(captured.lines(), expect_gpu)
