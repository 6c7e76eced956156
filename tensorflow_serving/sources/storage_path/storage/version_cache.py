"""Local copies of remote model versions, made atomically and size-bounded.

A version is downloaded into a private temporary directory and renamed into
place only once every file has arrived with its listed size, so a reader
never sees a half-downloaded version. Each server process keeps its own
directory under the cache root (worker processes may share one root), holds
an flock on it while alive, and removes the directories of dead processes
at start, so a crash leaves nothing that fills the disk for good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import dataclasses
import fcntl
import os
import shutil
import tempfile
import threading
import time

from absl import logging

from tensorflow_serving.util import status

_PROCESS_DIR_PREFIX = "tfs-cache-"
_MAX_BACKOFF_S = 30.0


@dataclasses.dataclass(frozen=True)
class CacheOptions:
  """How versions are cached and fetched; filled from the server's flags."""

  # Parent of this process's cache directory; empty: the system temp dir.
  root: str = ""
  # Bytes all cached versions together may take; 0: no limit.
  max_bytes: int = 0
  # Wall-clock bound on one attempt at downloading one version.
  download_timeout_s: float = 600.0
  # Further attempts after a transient failure, with doubling back-off.
  download_retries: int = 3
  initial_backoff_s: float = 1.0


@dataclasses.dataclass(frozen=True)
class FileToFetch:
  """One file of a version: where it goes, and how large it was listed."""

  relative_path: str
  size: int
  # Opens the remote file; yields its bytes.
  read: Callable[[], Iterator[bytes]]


class DownloadError(Exception):
  """A download that failed in a way the store did not word itself."""


def _is_safe_relative(path: str) -> bool:
  parts = path.split("/")
  return bool(path) and not path.startswith("/") and ".." not in parts


def _remove_stale_process_dirs(root: str) -> None:
  """Deletes cache directories whose owning process no longer holds them."""
  for name in os.listdir(root):
    if not name.startswith(_PROCESS_DIR_PREFIX) or not name.endswith(".lock"):
      continue
    lock_path = os.path.join(root, name)
    try:
      fd = os.open(lock_path, os.O_RDWR)
    except OSError:
      continue
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      continue  # Its process is alive.
    try:
      shutil.rmtree(lock_path[: -len(".lock")], ignore_errors=True)
      os.unlink(lock_path)
      logging.info("Removed stale model cache %s", lock_path[: -len(".lock")])
    finally:
      os.close(fd)


class VersionCache:
  """Downloads versions under one process-private directory.

  Thread-safe; `fetch` of one key runs at most once at a time per key.
  """

  def __init__(
      self,
      options: CacheOptions,
      sleep: Callable[[float], None] | None = None,
  ):
    self._options = options
    root = options.root or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    _remove_stale_process_dirs(root)
    self._dir = tempfile.mkdtemp(
        prefix=f"{_PROCESS_DIR_PREFIX}{os.getpid()}-", dir=root
    )
    self._lock_fd = os.open(self._dir + ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    self._partial = os.path.join(self._dir, ".partial")
    os.makedirs(self._partial)
    self._sleep = sleep
    self._lock = threading.Lock()
    # One download at a time: two polls fetching one key must not both
    # rename into place.
    self._fetch_lock = threading.Lock()
    self._sizes: dict[str, int] = {}  # key -> bytes of a completed entry
    self._reserved = 0  # bytes of downloads in progress

  @property
  def directory(self) -> str:
    return self._dir

  def used_bytes(self) -> int:
    with self._lock:
      return sum(self._sizes.values()) + self._reserved

  def local_path(self, key: str) -> str:
    """Where `key` (a relative path such as `s3/bucket/m/1`) is cached."""
    if not _is_safe_relative(key):
      raise status.invalid_argument(f"Cannot cache {key!r}: not a safe path")
    return os.path.join(self._dir, key)

  def cached(self, key: str) -> str | None:
    with self._lock:
      return self.local_path(key) if key in self._sizes else None

  def fetch(
      self,
      key: str,
      files: Iterable[FileToFetch],
      is_transient: Callable[[BaseException], bool],
      stop: threading.Event,
  ) -> str:
    """The local directory holding `files` under `key`, downloading if new.

    Retries transient failures up to `download_retries` times with doubling
    back-off; anything else (missing object, access denied, too large) is
    raised at once, as the store worded it. `stop` ends waits and downloads.
    """
    final = self.local_path(key)
    files = list(files)
    for f in files:
      if not _is_safe_relative(f.relative_path):
        raise status.invalid_argument(
            f"Refusing to cache {key}: unsafe object name {f.relative_path!r}"
        )
    with self._fetch_lock:
      return self._fetch_locked(key, final, files, is_transient, stop)

  def _fetch_locked(
      self,
      key: str,
      final: str,
      files: list[FileToFetch],
      is_transient: Callable[[BaseException], bool],
      stop: threading.Event,
  ) -> str:
    needed = sum(f.size for f in files)
    with self._lock:
      if key in self._sizes:
        return final
      limit = self._options.max_bytes
      used = sum(self._sizes.values()) + self._reserved
      if limit and used + needed > limit:
        raise status.resource_exhausted(
            f"Model cache full: {key} needs {needed} bytes, {used} of "
            f"{limit} are in use (--model_cache_size_bytes)"
        )
      self._reserved += needed
    try:
      attempt = 0
      while True:
        try:
          self._download_once(final, files, stop)
          break
        except Exception as e:  # pylint: disable=broad-except
          transient = is_transient(e) or isinstance(e, DownloadError)
          if stop.is_set() or not transient:
            raise
          if attempt >= self._options.download_retries:
            raise DownloadError(
                f"{e} (gave up after {attempt + 1} attempts)"
            ) from e
          backoff = min(
              _MAX_BACKOFF_S, self._options.initial_backoff_s * 2**attempt
          )
          attempt += 1
          # The caller logs the final failure; each retry only at vlog 1.
          logging.vlog(
              1,
              "Downloading %s failed (%s); retry %d of %d in %.1fs",
              key,
              e,
              attempt,
              self._options.download_retries,
              backoff,
          )
          if self._sleep is not None:
            self._sleep(backoff)
          elif stop.wait(backoff):
            raise
    finally:
      with self._lock:
        self._reserved -= needed
    with self._lock:
      self._sizes[key] = needed
    return final

  def _download_once(
      self, final: str, files: list[FileToFetch], stop: threading.Event
  ) -> None:
    deadline = time.monotonic() + self._options.download_timeout_s
    tmp = tempfile.mkdtemp(dir=self._partial)
    try:
      for f in files:
        target = os.path.join(tmp, f.relative_path)
        if f.relative_path.endswith("/"):
          os.makedirs(target, exist_ok=True)  # A directory marker object.
          continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        written = 0
        with open(target, "wb") as out:
          for chunk in f.read():
            written += len(chunk)
            if written > f.size:
              # Bounded by the listed size, so the cache limit holds even
              # when an object grows after it was listed.
              raise DownloadError(
                  f"{f.relative_path} grew beyond its listed {f.size} bytes"
              )
            out.write(chunk)
            if stop.is_set():
              raise DownloadError("stopped")
            if time.monotonic() > deadline:
              raise DownloadError(
                  "timed out after "
                  f"{self._options.download_timeout_s:g}s "
                  "(--model_download_timeout_seconds)"
              )
        if written != f.size:
          raise DownloadError(
              f"{f.relative_path}: got {written} of {f.size} listed bytes"
          )
      if os.path.exists(final):
        shutil.rmtree(final)  # Left by an evicted entry's failed removal.
      os.makedirs(os.path.dirname(final), exist_ok=True)
      os.rename(tmp, final)
    except BaseException:
      shutil.rmtree(tmp, ignore_errors=True)
      raise

  def evict(self, key: str) -> None:
    """Removes a cached version; a no-op for keys never fetched."""
    with self._lock:
      if self._sizes.pop(key, None) is None:
        return
    path = self.local_path(key)
    # Renamed away first so a concurrent fetch of the same key starts clean.
    doomed = tempfile.mkdtemp(dir=self._partial)
    try:
      os.rename(path, os.path.join(doomed, "v"))
    except OSError as e:
      logging.warning("Could not evict cached %s: %s", path, e)
    shutil.rmtree(doomed, ignore_errors=True)

  def close(self) -> None:
    """Removes this process's cache directory."""
    with self._lock:
      self._sizes.clear()
    shutil.rmtree(self._dir, ignore_errors=True)
    try:
      os.unlink(self._dir + ".lock")
    finally:
      os.close(self._lock_fd)
