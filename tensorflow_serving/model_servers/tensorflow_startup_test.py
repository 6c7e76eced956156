"""TensorFlow's start-up lines: a CPU build's cuInit error is not an error."""

from __future__ import annotations

import os
import subprocess
import sys

from absl import logging
from absl.testing import absltest

from tensorflow_serving.model_servers import tensorflow_startup
from tensorflow_serving.util import native_stderr

CUINIT = (
    b"E0000 00:00:1796610126.763683   12061 cuda_platform.cc:52] failed call "
    b"to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR "
    b"(303)\n"
)
OTHER_ERROR = b"E0000 00:00:1.0   1 foo.cc:1] a real error\n"
INFO = b"I0000 00:00:1.0   1 cudart_stub.cc:31] Could not find cuda drivers\n"


def native_lines(*lines: bytes):
  def load():
    for line in lines:
      os.write(native_stderr.STDERR_FD, line)

  return load


class ImportTensorflowTest(absltest.TestCase):

  def run_filtered(self, expect_gpu: bool, load) -> tuple[bytes, list[str]]:
    with self.assertLogs(level="INFO") as logs:
      with native_stderr.capture() as outer:
        tensorflow_startup.import_tensorflow(expect_gpu, load=load)
      logging.info("end")
    return outer.data, logs.output

  def test_cpu_build_logs_cuinit_as_info_and_keeps_the_rest_in_order(self):
    written, logs = self.run_filtered(
        False, native_lines(INFO, CUINIT, OTHER_ERROR)
    )
    self.assertEqual(written, INFO + OTHER_ERROR)
    self.assertEqual(
        logs[0],
        "INFO:absl:No usable CUDA driver (a CPU build needs none): failed "
        "call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: "
        "UNKNOWN ERROR (303)",
    )

  def test_cuda_build_keeps_cuinit_an_error(self):
    written, logs = self.run_filtered(True, native_lines(INFO, CUINIT))
    self.assertEqual(written, INFO + CUINIT)
    self.assertEqual(logs, ["INFO:absl:end"])

  def test_lines_are_written_back_when_the_import_fails(self):
    def failing():
      os.write(native_stderr.STDERR_FD, OTHER_ERROR)
      raise ImportError("broken TensorFlow")

    with native_stderr.capture() as outer:
      with self.assertRaises(ImportError):
        tensorflow_startup.import_tensorflow(False, load=failing)
    self.assertEqual(outer.data, OTHER_ERROR)


class ReleaseTest(absltest.TestCase):

  def test_an_exit_during_the_import_keeps_the_lines(self):
    """os._exit (a signal while starting) runs no `finally`: release first."""
    script = (
        "import os\n"
        "from tensorflow_serving.util import native_stderr\n"
        "with native_stderr.capture():\n"
        "  os.write(2, b'E0000 native line\\n')\n"
        "  native_stderr.release()\n"
        "  os.write(2, b'after release\\n')\n"
        "  os._exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=60,
        check=False,
    )
    self.assertEqual(done.returncode, 3)
    self.assertEqual(done.stderr, b"E0000 native line\nafter release\n")


if __name__ == "__main__":
  absltest.main()
