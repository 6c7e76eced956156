"""A FileSystem over an object store, loading versions from a local cache.

Polling costs one listing of `<base>/` (all pages) per period: that single
listing yields both the version names and, per version, the objects to copy.
A version counts only once it is complete in the listing (`saved_model.pb`
or `saved_model.pbtxt` with something under `variables/`, or a TF Lite
`model.tflite`), because uploads to an object store are not atomic: a
half-uploaded version must not be aspired and then fail to load.
"""

from __future__ import annotations

import functools
import re
import threading

from absl import logging

from tensorflow_serving.sources.storage_path.storage import object_store
from tensorflow_serving.sources.storage_path.storage import version_cache

_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_TFLITE_FILE = "model.tflite"
_VARIABLES_DIR = "variables/"
_VARIABLES_INDEX = "variables/variables.index"
_VARIABLES_SHARD = re.compile(r"variables/variables\.data-(\d+)-of-(\d+)$")


def split_uri(uri: str) -> tuple[str, str, str]:
  """`s3://bucket/a/b/` -> ('s3', 'bucket', 'a/b'): scheme, bucket, prefix."""
  scheme, sep, rest = uri.partition("://")
  if not sep:
    raise ValueError(f"Not a URI: {uri}")
  bucket, _, prefix = rest.partition("/")
  if not bucket:
    raise ValueError(f"No bucket in {uri}")
  return scheme.lower(), bucket, prefix.strip("/")


def is_complete(relative_names: set[str]) -> bool:
  """Whether a version's listed files (relative to it) can be loaded."""
  if _TFLITE_FILE in relative_names:
    return True
  has_graph = any(name in relative_names for name in _SAVED_MODEL_FILES)
  return has_graph and _checkpoint_complete(relative_names)


def _checkpoint_complete(relative_names: set[str]) -> bool:
  """The variables' index and every data shard it is split into are listed.

  Something under `variables/` is not enough: objects are uploaded one by
  one, and a version caught between its index and its data (or between two
  shards) would be copied incomplete and fail every load retry.
  """
  if _VARIABLES_INDEX not in relative_names:
    return False
  shards: dict[int, set[int]] = {}
  for name in relative_names:
    match = _VARIABLES_SHARD.match(name)
    if match:
      shards.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
  return any(found == set(range(total)) for total, found in shards.items())


class RemoteFileSystem:
  """Lists an object store; copies chosen versions into a VersionCache."""

  # exists() would cost a request per call: list the base path instead.
  cheap_exists = False
  # Polled over the network: one line per distinct failure, not per poll.
  log_errors_once = True

  def __init__(
      self,
      store: object_store.ObjectStore,
      cache: version_cache.VersionCache,
  ):
    self._store = store
    self._cache = cache
    self._lock = threading.Lock()
    # Version URI -> its objects in the latest listing of its base path.
    self._listed: dict[str, list[object_store.ObjectInfo]] = {}
    self._reported_incomplete: set[str] = set()

  # -- FileSystem ------------------------------------------------------------

  def exists(self, path: str) -> bool:
    _, bucket, prefix = split_uri(path)
    return bool(self._store.list_objects(bucket, _dir_prefix(prefix)))

  def listdir(self, path: str) -> list[str]:
    _, bucket, prefix = split_uri(path)
    start = _dir_prefix(prefix)
    names = {
        o.key[len(start) :].split("/", 1)[0]
        for o in self._store.list_objects(bucket, start)
    }
    return sorted(names - {""})

  def isdir(self, path: str) -> bool:
    return self.exists(path)

  def version_children(self, base: str) -> list[str]:
    """Complete version directories of `base`, from one listing."""
    _, bucket, prefix = split_uri(base)
    start = _dir_prefix(prefix)
    objects = self._store.list_objects(bucket, start)
    if not objects:
      raise FileNotFoundError(
          f"NOT_FOUND: {base}; no object in bucket {bucket} under " f"'{start}'"
      )
    by_child: dict[str, list[object_store.ObjectInfo]] = {}
    for o in objects:
      child, _, rest = o.key[len(start) :].partition("/")
      if child and rest:
        by_child.setdefault(child, []).append(o)
    complete = []
    listed = {}
    for child, members in sorted(by_child.items()):
      uri = f"{base.rstrip('/')}/{child}"
      names = {o.key[len(start) + len(child) + 1 :] for o in members}
      if is_complete(names):
        complete.append(child)
        listed[uri] = members
        self._reported_incomplete.discard(uri)
      elif uri not in self._reported_incomplete:
        self._reported_incomplete.add(uri)
        logging.info(
            "Not loading %s yet: it lists no %s with variables/ and no %s",
            uri,
            " or ".join(_SAVED_MODEL_FILES),
            _TFLITE_FILE,
        )
    with self._lock:
      stale = [u for u in self._listed if u.startswith(base.rstrip("/") + "/")]
      for uri in stale:
        del self._listed[uri]
      self._listed.update(listed)
    return complete

  def local_path(self, version_path: str, stop: threading.Event) -> str:
    """A local copy of the version, downloaded unless already cached."""
    scheme, bucket, prefix = split_uri(version_path)
    key = f"{scheme}/{bucket}/{prefix}"
    cached = self._cache.cached(key)
    if cached is not None:
      return cached
    with self._lock:
      objects = self._listed.get(version_path.rstrip("/"))
    start = _dir_prefix(prefix)
    if objects is None:  # Not from a listing of its base path: list it.
      objects = self._store.list_objects(bucket, start)
      if not is_complete({o.key[len(start) :] for o in objects}):
        raise FileNotFoundError(
            f"NOT_FOUND: {version_path} is missing or incomplete"
        )
    files = [
        version_cache.FileToFetch(
            o.key[len(start) :],
            o.size,
            functools.partial(self._store.read_object, bucket, o.key),
        )
        for o in objects
        if o.key[len(start) :]
    ]
    logging.info(
        "Downloading %s (%d files, %d bytes)",
        version_path,
        len(files),
        sum(f.size for f in files),
    )
    path = self._cache.fetch(key, files, self._store.is_transient, stop)
    logging.info("Downloaded %s to %s", version_path, path)
    return path

  def release(self, version_path: str) -> None:
    """Drops the cached copy of a version that is no longer aspired."""
    scheme, bucket, prefix = split_uri(version_path)
    self._cache.evict(f"{scheme}/{bucket}/{prefix}")


def _dir_prefix(prefix: str) -> str:
  return f"{prefix}/" if prefix else ""
