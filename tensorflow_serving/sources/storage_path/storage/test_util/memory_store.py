"""An in-memory ObjectStore for tests of remote model stores."""

from __future__ import annotations

from tensorflow_serving.sources.storage_path.storage import object_store


class StoreError(Exception):
  """Stands in for a client library's error; `transient` picks retries."""

  def __init__(self, message: str, transient: bool = False):
    super().__init__(message)
    self.transient = transient


class MemoryStore:
  """Buckets of bytes; `fail_reads` makes the next reads break mid-object."""

  def __init__(self):
    self.objects: dict[tuple[str, str], bytes] = {}
    self.list_calls = 0
    self.read_calls = 0
    self.fail_reads: list[StoreError] = []
    self.on_read = None

  def put(self, bucket: str, key: str, data: bytes) -> None:
    self.objects[(bucket, key)] = data

  def list_objects(self, bucket, prefix):
    self.list_calls += 1
    if not any(b == bucket for b, _ in self.objects):
      raise StoreError(f"NoSuchBucket: {bucket} does not exist")
    return [
        object_store.ObjectInfo(k, len(v))
        for (b, k), v in sorted(self.objects.items())
        if b == bucket and k.startswith(prefix)
    ]

  def read_object(self, bucket, key):
    self.read_calls += 1
    if self.on_read is not None:
      self.on_read(key)
    data = self.objects.get((bucket, key))
    if data is None:
      raise StoreError(f"NoSuchKey: {key}")
    yield data[: len(data) // 2]
    if self.fail_reads:
      raise self.fail_reads.pop(0)
    yield data[len(data) // 2 :]

  def is_transient(self, error):
    return getattr(error, "transient", False)


def put_version(
    store: MemoryStore,
    bucket: str,
    base: str,
    version: int,
    *,
    complete: bool = True,
    payload: bytes = b"w" * 100,
) -> None:
  """A 5-byte saved_model.pb and, when complete, its variables' index
  (`payload`) and one empty data shard."""
  store.put(bucket, f"{base}/{version}/saved_model.pb", b"graph")
  if complete:
    store.put(bucket, f"{base}/{version}/variables/variables.index", payload)
    store.put(
        bucket, f"{base}/{version}/variables/variables.data-00000-of-00001", b""
    )
