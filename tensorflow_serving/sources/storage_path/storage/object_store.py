"""What a remote model store must offer: one listing and streamed reads."""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
  """One listed object: its full key and its size in bytes."""

  key: str
  size: int


class ObjectStore(Protocol):
  """A bucket-and-key store such as S3 or an S3-compatible server.

  Errors are raised as the client library's own exceptions so that their
  messages (the store's own words) reach the log unchanged.
  """

  def list_objects(self, bucket: str, prefix: str) -> list[ObjectInfo]:
    """Every object whose key starts with `prefix` (all pages)."""
    ...

  def read_object(self, bucket: str, key: str) -> Iterator[bytes]:
    """The object's bytes in chunks; each read is bounded by a timeout."""
    ...

  def is_transient(self, error: BaseException) -> bool:
    """Whether retrying the same request may succeed (network, 5xx)."""
    ...
