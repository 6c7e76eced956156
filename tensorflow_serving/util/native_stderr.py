"""Capturing what native code writes to stderr (fd 2) during one call.

TensorFlow's C++ logging writes straight to file descriptor 2, past Python's
logging. To judge a line before it is shown (see servables/tensorflow/
device.initialize_platforms), the call runs with fd 2 pointed at a temporary
file, and the caller decides what to write back. A file, not a pipe: nothing
blocks however much is written, and nothing is lost if the call raises.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import os
import sys
import tempfile

STDERR_FD = 2


class Captured:
  """The bytes written to fd 2 inside `capture()`, once it has ended."""

  def __init__(self):
    self.data = b""

  def lines(self) -> list[bytes]:
    return self.data.splitlines(keepends=True)


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
  """Redirects fd 2 to a temporary file for the `with` block."""
  captured = Captured()
  sys.stderr.flush()
  saved = os.dup(STDERR_FD)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), STDERR_FD)
    try:
      yield captured
    finally:
      sys.stderr.flush()
      os.dup2(saved, STDERR_FD)
      os.close(saved)
      sink.seek(0)
      captured.data = sink.read()


def write(data: bytes) -> None:
  """Writes bytes to fd 2 as native code would have."""
  while data:
    data = data[os.write(STDERR_FD, data) :]
