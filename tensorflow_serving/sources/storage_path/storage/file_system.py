"""The file-system surface the storage path source polls, chosen per path.

Local paths and every URI TensorFlow's own file systems know (`gs://`,
`hdfs://`, ...) are listed in place and loaded in place, as upstream does.
Object-store URIs TensorFlow no longer reads (`s3://`) go through a
`remote_file_system.RemoteFileSystem`, which copies each chosen version into a
local cache before it is aspired; `FileSystems` picks one by URI scheme.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol


class FileSystem(Protocol):
  """What the source needs of a file system; injectable for tests.

  Methods raise an exception (any kind) on access errors; its message ends up
  in the logged poll error. `version_children` raises FileNotFoundError when
  the base path does not exist.
  """

  def exists(self, path: str) -> bool:
    ...

  def listdir(self, path: str) -> list[str]:
    ...

  def isdir(self, path: str) -> bool:
    ...

  # Whether exists() is cheap enough to probe each 'specific' version path
  # instead of listing the base path.
  cheap_exists: bool
  # Whether a failed listing is logged once per distinct message rather
  # than at every poll (as upstream does for its file systems).
  log_errors_once: bool

  def version_children(self, base: str) -> list[str]:
    ...

  def local_path(self, version_path: str, stop: threading.Event) -> str:
    """Where the version can be loaded from (a local copy, or itself)."""
    ...

  def release(self, version_path: str) -> None:
    """Called once a version is no longer aspired."""
    ...


class DirectoryFileSystem:
  """Shared listing for file systems with real directories.

  Every child of the base path is a version candidate, complete or not, as
  upstream: a directory appears in one step (an atomic rename, a mount).
  Versions load in place.
  """

  cheap_exists = True
  log_errors_once = False

  def exists(self, path: str) -> bool:
    raise NotImplementedError

  def listdir(self, path: str) -> list[str]:
    raise NotImplementedError

  def isdir(self, path: str) -> bool:
    raise NotImplementedError

  def version_children(self, base: str) -> list[str]:
    if not self.exists(base):
      raise FileNotFoundError(f"NOT_FOUND: {base}; No such file or directory")
    return self.listdir(base)

  def local_path(self, version_path: str, stop: threading.Event) -> str:
    del stop  # Nothing to wait for.
    return version_path

  def release(self, version_path: str) -> None:
    pass


class GFileSystem(DirectoryFileSystem):
  """tf.io.gfile, so every TensorFlow file-system URI works (`gs://` too).

  TensorFlow is imported on first use, keeping this module cheap to import.
  """

  def __init__(self):
    self._gfile = None

  def _io(self):
    if self._gfile is None:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top

      self._gfile = tf.io.gfile
    return self._gfile

  def exists(self, path: str) -> bool:
    return self._io().exists(path)

  def listdir(self, path: str) -> list[str]:
    return self._io().listdir(path)

  def isdir(self, path: str) -> bool:
    return self._io().isdir(path)


class LocalFileSystem(DirectoryFileSystem):
  """Plain os-based file system, for local paths without importing TF."""

  def exists(self, path: str) -> bool:
    return os.path.exists(path)

  def listdir(self, path: str) -> list[str]:
    return os.listdir(path)

  def isdir(self, path: str) -> bool:
    return os.path.isdir(path)


def scheme_of(path: str) -> str:
  """`s3` for `s3://b/k`; empty for local paths."""
  head, sep, _ = path.partition("://")
  return head.lower() if sep else ""
