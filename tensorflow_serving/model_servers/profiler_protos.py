"""tensorflow.ProfilerService's messages, from the descriptor TensorFlow ships.

The tensorflow pip package compiles `tsl/profiler/protobuf/profiler_service
.proto` into its profiler library but ships no Python module for it. Rather
than keep a copy of the .proto here (which would drift from the TensorFlow
that serves), this reads the serialized FileDescriptorProto that protoc
embedded in that library, registers it (and any dependency Python lacks) in
the default descriptor pool, and builds the message classes from it. The
pool is protobuf's default one, so server reflection describes the service
too.
"""

from __future__ import annotations

import mmap
import os
import types

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message
from google.protobuf import message_factory

SERVICE_PROTO = "tsl/profiler/protobuf/profiler_service.proto"
# The library that serves profiles in TensorFlow's own process.
_LIBRARY = "python/profiler/internal/_pywrap_profiler_plugin.so"
_MESSAGES = (
    "ProfileRequest",
    "ProfileResponse",
    "TerminateRequest",
    "TerminateResponse",
)


class NotFoundError(Exception):
  """The installed TensorFlow does not carry the descriptor."""


def _varint(data, pos: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    byte = data[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if byte < 0x80:
      return value, pos


def _embedded_file(data, name: str) -> descriptor_pb2.FileDescriptorProto:
  """The FileDescriptorProto named `name` inside a binary image.

  protoc stores it as a C string: it starts with field 1 (the file's name)
  and ends at the NUL after its last field, a tag no message may have.
  """
  encoded = name.encode()
  start = data.find(b"\n" + bytes([len(encoded)]) + encoded)
  if start < 0:
    raise NotFoundError(f"{name} is not in TensorFlow's profiler library")
  pos = start
  while True:
    tag, after = _varint(data, pos)
    number, wire_type = tag >> 3, tag & 7
    if number == 0 or wire_type not in (0, 2):
      break
    if wire_type == 0:
      _, pos = _varint(data, after)
    else:
      length, after = _varint(data, after)
      pos = after + length
  return descriptor_pb2.FileDescriptorProto.FromString(bytes(data[start:pos]))


def _add(pool, data, name: str) -> None:
  try:
    pool.FindFileByName(name)
    return
  except KeyError:
    pass
  proto = _embedded_file(data, name)
  for dependency in proto.dependency:
    _add(pool, data, dependency)
  pool.Add(proto)


def load() -> types.SimpleNamespace:
  """The service's message classes, as attributes named after them."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from tensorflow.tsl.profiler.protobuf import profiler_options_pb2  # noqa: F401 (in the pool)
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: F401 (in the pool)

  path = os.path.join(os.path.dirname(tf.__file__), _LIBRARY)
  pool = descriptor_pool.Default()
  try:
    with (
        open(path, "rb") as f,
        mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
    ):
      _add(pool, data, SERVICE_PROTO)
  except (
      OSError,
      IndexError,
      ValueError,
      TypeError,
      message.DecodeError,
  ) as exc:
    raise NotFoundError(f"cannot read {path}: {exc}") from exc
  return types.SimpleNamespace(
      **{
          name: message_factory.GetMessageClass(
              pool.FindMessageTypeByName(f"tensorflow.{name}")
          )
          for name in _MESSAGES
      }
  )
