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
from typing import Any

STDERR_FD = 2


class Captured:
  """The bytes written to fd 2 inside `capture()`, once it has ended."""

  def __init__(self):
    self.data = b""

  def lines(self) -> list[bytes]:
    return self.data.splitlines(keepends=True)


# The capture in progress, if any: (saved fd 2, its sink, its Captured).
_active: list[tuple[int, Any, Captured]] = []


def _end(saved: int, sink: Any, captured: Captured) -> None:
  sys.stderr.flush()
  os.dup2(saved, STDERR_FD)
  os.close(saved)
  sink.seek(0)
  captured.data = sink.read()


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
  """Redirects fd 2 to a temporary file for the `with` block."""
  captured = Captured()
  sys.stderr.flush()
  saved = os.dup(STDERR_FD)
  with tempfile.TemporaryFile() as sink:
    os.dup2(sink.fileno(), STDERR_FD)
    _active.append((saved, sink, captured))
    try:
      yield captured
    finally:
      if _active and _active[-1][2] is captured:
        _active.pop()
        _end(saved, sink, captured)


def release() -> None:
  """Ends a capture in progress now, writing back all it holds, unjudged.

  For a process about to exit (os._exit runs no `finally`): what native
  code wrote meanwhile, and what the exit logs next, still reach stderr.
  """
  while _active:
    saved, sink, captured = _active.pop()
    _end(saved, sink, captured)
    write(captured.data)


def write(data: bytes) -> None:
  """Writes bytes to fd 2 as native code would have."""
  while data:
    data = data[os.write(STDERR_FD, data) :]
