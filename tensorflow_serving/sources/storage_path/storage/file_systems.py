"""Picks the FileSystem for a base path by its URI scheme.

`s3://` goes through boto3 and a local version cache (TensorFlow dropped
its S3 file system); everything else, `gs://` included, through
tf.io.gfile as upstream.
"""

from __future__ import annotations

import dataclasses
import threading

from tensorflow_serving.sources.storage_path.storage import file_system
from tensorflow_serving.sources.storage_path.storage import remote_file_system
from tensorflow_serving.sources.storage_path.storage import s3_store
from tensorflow_serving.sources.storage_path.storage import version_cache

REMOTE_SCHEMES = ("s3",)


@dataclasses.dataclass(frozen=True)
class StorageOptions:
  """Remote-store settings; the server fills them from its flags."""

  cache: version_cache.CacheOptions = version_cache.CacheOptions()
  # Connect and per-read timeout of every object-store request (listings
  # included), so a hung store stalls a poll round for at most this long.
  request_timeout_s: float = 30.0


class FileSystems:
  """One FileSystem per scheme, made on first use; close() drops the cache."""

  def __init__(self, options: StorageOptions | None = None):
    self._options = options or StorageOptions()
    self._lock = threading.Lock()
    self._local = file_system.GFileSystem()
    self._cache: version_cache.VersionCache | None = None
    self._remote: dict[str, remote_file_system.RemoteFileSystem] = {}

  def for_path(self, path: str) -> file_system.FileSystem:
    scheme = file_system.scheme_of(path)
    if scheme not in REMOTE_SCHEMES:
      return self._local
    with self._lock:
      fs = self._remote.get(scheme)
      if fs is None:
        if self._cache is None:
          self._cache = version_cache.VersionCache(self._options.cache)
        store = s3_store.S3Store(self._options.request_timeout_s)
        fs = remote_file_system.RemoteFileSystem(store, self._cache)
        self._remote[scheme] = fs
      return fs

  def close(self) -> None:
    with self._lock:
      cache, self._cache = self._cache, None
      self._remote.clear()
    if cache is not None:
      cache.close()
