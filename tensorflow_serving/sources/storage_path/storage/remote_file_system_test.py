"""RemoteFileSystem + VersionCache against an in-memory object store."""

from __future__ import annotations

import os
import threading

from absl.testing import absltest

from tensorflow_serving.sources.storage_path.storage import remote_file_system
from tensorflow_serving.sources.storage_path.storage import version_cache
from tensorflow_serving.sources.storage_path.storage.test_util import (
    memory_store,
)
from tensorflow_serving.util import status


def _put_version(store, version, *, complete=True, payload=b"w" * 100):
  store.put("bkt", f"models/m/{version}/saved_model.pb", b"graph")
  if complete:
    store.put("bkt", f"models/m/{version}/variables/variables.index", payload)
    store.put(
        "bkt",
        f"models/m/{version}/variables/variables.data-00000-of-00001",
        b"",
    )


class RemoteFileSystemTest(absltest.TestCase):

  def make(self, **options):
    self.store = memory_store.MemoryStore()
    self.sleeps = []
    cache = version_cache.VersionCache(
        version_cache.CacheOptions(
            root=self.create_tempdir().full_path, **options
        ),
        sleep=self.sleeps.append,
    )
    self.addCleanup(cache.close)
    self.cache = cache
    self.stop = threading.Event()
    return remote_file_system.RemoteFileSystem(self.store, cache)

  def test_complete_means_graph_index_and_every_shard(self):
    graph, index = "saved_model.pb", "variables/variables.index"
    shard = "variables/variables.data-{:05d}-of-00002".format
    self.assertTrue(
        remote_file_system.is_complete({graph, index, shard(0), shard(1)})
    )
    # Caught mid-upload: one shard, no index, or no graph yet.
    self.assertFalse(remote_file_system.is_complete({graph, index, shard(0)}))
    self.assertFalse(
        remote_file_system.is_complete({graph, shard(0), shard(1)})
    )
    self.assertFalse(
        remote_file_system.is_complete({index, shard(0), shard(1)})
    )
    self.assertTrue(remote_file_system.is_complete({"model.tflite"}))

  def test_split_uri(self):
    self.assertEqual(
        remote_file_system.split_uri("s3://b/a/c/"), ("s3", "b", "a/c")
    )
    self.assertEqual(remote_file_system.split_uri("S3://b"), ("s3", "b", ""))
    with self.assertRaises(ValueError):
      remote_file_system.split_uri("s3:///k")

  def test_one_listing_finds_only_complete_versions(self):
    fs = self.make()
    _put_version(self.store, 1)
    _put_version(self.store, 2, complete=False)  # Upload in progress.
    self.store.put("bkt", "models/m/3/model.tflite", b"tflite")
    self.store.put("bkt", "models/m/README", b"not a version")
    self.store.put("bkt", "models/m2/9/saved_model.pb", b"other model")
    self.assertEqual(fs.version_children("s3://bkt/models/m"), ["1", "3"])
    self.assertEqual(self.store.list_calls, 1)

  def test_missing_prefix_and_bucket(self):
    fs = self.make()
    _put_version(self.store, 1)
    with self.assertRaisesRegex(FileNotFoundError, "no object in bucket bkt"):
      fs.version_children("s3://bkt/other")
    with self.assertRaisesRegex(memory_store.StoreError, "NoSuchBucket: nope"):
      fs.version_children("s3://nope/models/m")

  def test_download_is_cached_and_released(self):
    fs = self.make()
    _put_version(self.store, 1)
    fs.version_children("s3://bkt/models/m")
    local = fs.local_path("s3://bkt/models/m/1", self.stop)
    with open(os.path.join(local, "variables/variables.index"), "rb") as f:
      self.assertEqual(f.read(), b"w" * 100)
    self.assertEqual(self.cache.used_bytes(), 105)
    reads = self.store.read_calls
    self.assertEqual(fs.local_path("s3://bkt/models/m/1", self.stop), local)
    self.assertEqual(self.store.read_calls, reads)  # Served from the cache.
    fs.release("s3://bkt/models/m/1")
    self.assertFalse(os.path.exists(local))
    self.assertEqual(self.cache.used_bytes(), 0)
    # Only complete versions, and nothing half-written, ever lie in the cache.
    self.assertEqual(
        os.listdir(os.path.join(self.cache.directory, ".partial")), []
    )

  def test_transient_failure_retried_with_backoff(self):
    fs = self.make(download_retries=2, initial_backoff_s=0.5)
    _put_version(self.store, 1)
    fs.version_children("s3://bkt/models/m")
    self.store.fail_reads = [
        memory_store.StoreError("connection reset", transient=True),
        memory_store.StoreError("connection reset", transient=True),
    ]
    local = fs.local_path("s3://bkt/models/m/1", self.stop)
    self.assertTrue(os.path.isdir(os.path.join(local, "variables")))
    self.assertEqual(self.sleeps, [0.5, 1.0])

  def test_retries_exhausted_leave_nothing_behind(self):
    fs = self.make(download_retries=1)
    _put_version(self.store, 1)
    fs.version_children("s3://bkt/models/m")
    self.store.fail_reads = [
        memory_store.StoreError("network down", transient=True)
        for _ in range(2)
    ]
    with self.assertRaisesRegex(
        version_cache.DownloadError,
        r"^network down \(gave up after 2 attempts\)$",
    ):
      fs.local_path("s3://bkt/models/m/1", self.stop)
    self.assertEqual(self.cache.used_bytes(), 0)
    self.assertIsNone(self.cache.cached("s3/bkt/models/m/1"))
    self.assertEqual(
        os.listdir(os.path.join(self.cache.directory, ".partial")), []
    )
    # The store recovers: the next poll's attempt succeeds.
    fs.local_path("s3://bkt/models/m/1", self.stop)
    self.assertIsNotNone(self.cache.cached("s3/bkt/models/m/1"))

  def test_version_deleted_while_downloading_is_not_retried(self):
    fs = self.make(download_retries=3)
    _put_version(self.store, 1)
    fs.version_children("s3://bkt/models/m")

    def delete_version(key):
      del key
      for k in [k for k in self.store.objects if "/m/1/" in k[1]]:
        del self.store.objects[k]

    self.store.on_read = delete_version
    with self.assertRaisesRegex(memory_store.StoreError, "NoSuchKey"):
      fs.local_path("s3://bkt/models/m/1", self.stop)
    self.assertEqual(self.sleeps, [])  # Not transient: no retry.
    self.assertEqual(self.cache.used_bytes(), 0)

  def test_cache_size_limit(self):
    fs = self.make(max_bytes=150)
    _put_version(self.store, 1)
    _put_version(self.store, 2)
    fs.version_children("s3://bkt/models/m")
    fs.local_path("s3://bkt/models/m/1", self.stop)
    with self.assertRaises(status.ServingError) as cm:
      fs.local_path("s3://bkt/models/m/2", self.stop)
    self.assertEqual(cm.exception.code, status.Code.RESOURCE_EXHAUSTED)
    self.assertIn("needs 105 bytes, 105 of 150 are in use", str(cm.exception))
    fs.release("s3://bkt/models/m/1")
    fs.local_path("s3://bkt/models/m/2", self.stop)

  def test_object_larger_than_listed_is_cut_off(self):
    fs = self.make(download_retries=0)
    _put_version(self.store, 1)
    fs.version_children("s3://bkt/models/m")
    _put_version(self.store, 1, payload=b"w" * 10_000)  # Grew after listing.
    with self.assertRaisesRegex(
        version_cache.DownloadError, "grew beyond its listed 100 bytes"
    ):
      fs.local_path("s3://bkt/models/m/1", self.stop)
    self.assertEqual(self.cache.used_bytes(), 0)

  def test_unsafe_key_refused(self):
    fs = self.make()
    _put_version(self.store, 1)
    self.store.put("bkt", "models/m/1/../../escape", b"x")
    fs.version_children("s3://bkt/models/m")
    with self.assertRaisesRegex(status.ServingError, "unsafe object name"):
      fs.local_path("s3://bkt/models/m/1", self.stop)

  def test_stale_process_directory_removed(self):
    root = self.create_tempdir().full_path
    first = version_cache.VersionCache(version_cache.CacheOptions(root=root))
    # A live process's directory is kept ...
    second = version_cache.VersionCache(version_cache.CacheOptions(root=root))
    self.assertTrue(os.path.isdir(first.directory))
    # ... a dead one's (its lock released, directory left) is removed.
    os.close(first._lock_fd)  # pylint: disable=protected-access
    third = version_cache.VersionCache(version_cache.CacheOptions(root=root))
    self.assertFalse(os.path.exists(first.directory))
    second.close()
    third.close()


if __name__ == "__main__":
  absltest.main()
