"""The `tfrecord` log collector: logs as TFRecord files under a filename prefix.

Files are named

    <filename_prefix>-[<stream>-]<UTC open time>Z-<n>.tfrecord
    e.g. /var/log/tfs/mnist-worker1-20261207T020304Z-0.tfrecord

where `<stream>` tells apart processes logging under one prefix
(`worker<i>` under --num_workers) and `<n>` counts the files this collector
opened. A file is closed and the next one opened when a record would take it
past `max_file_bytes`, or once it is `max_file_age_s` old (checked on every
write and whenever the writer is idle), so a closed file is complete and can
be shipped. Records are framed as TensorFlow writes them (length, masked
CRC-32C of the length, data, masked CRC-32C of the data), so
`tf.data.TFRecordDataset` and upstream's warmup reader read the files.

A failed write (disk full, I/O error) drops the file: the next write, after
`retry_interval_s`, opens a new one. A reader may find a truncated last
record in a file that was being written; `tfrecord.read_records` stops there.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from typing import BinaryIO

import google_crc32c

from tensorflow_serving.core import log_collector
from tensorflow_serving.util import status

TYPE = "tfrecord"
SUFFIX = ".tfrecord"
_MASK_DELTA = 0xA282EAD8
# Records are buffered up to this much between flushes (the writer flushes
# at least every second): one write system call per record cost the writer
# thread more than encoding the record.
WRITE_BUFFER_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class RotationOptions:
  """When a log file is closed and the next one opened."""

  max_file_bytes: int = 128 << 20
  max_file_age_s: float = 3600.0
  # After a failed write, no new file is tried for this long.
  retry_interval_s: float = 1.0


def masked_crc32c(data: bytes) -> int:
  """TFRecord's checksum: CRC-32C, rotated and offset (TensorFlow's Mask)."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
  """One TFRecord: header, data, footer."""
  length = struct.pack("<Q", len(record))
  return b"".join(
      (
          length,
          struct.pack("<I", masked_crc32c(length)),
          record,
          struct.pack("<I", masked_crc32c(record)),
      )
  )


def read_records(path: str):
  """Yields the records of one TFRecord file; stops at a truncated tail.

  Raises ServingError(DATA_LOSS) on a checksum mismatch (a corrupt file, not
  one still being written).
  """
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack("<Q", header[:8])
      (length_crc,) = struct.unpack("<I", header[8:])
      if masked_crc32c(header[:8]) != length_crc:
        raise status.data_loss(f"Corrupted record length in {path}")
      data = f.read(length)
      footer = f.read(4)
      if len(data) < length or len(footer) < 4:
        return
      if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise status.data_loss(f"Corrupted record data in {path}")
      yield data


class TFRecordLogCollector:
  """Writes framed records to rotating files; used by one thread only."""

  def __init__(
      self,
      filename_prefix: str,
      stream: str = "",
      options: RotationOptions | None = None,
      clock=time.time,
  ):
    if not filename_prefix:
      raise status.invalid_argument(
          "LogCollectorConfig.filename_prefix is empty: the tfrecord "
          "collector needs one"
      )
    self._prefix = filename_prefix
    self._stream = stream
    self._options = options or RotationOptions()
    self._clock = clock
    self._file: BinaryIO | None = None
    self._opened_at = 0.0
    self._size = 0
    self._count = 0
    self._retry_at = 0.0
    self.path = ""  # The file open now, or last open.

  def _name(self, opened_at: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(opened_at))
    stream = f"{self._stream}-" if self._stream else ""
    sep = "" if self._prefix.endswith(os.sep) else "-"
    return f"{self._prefix}{sep}{stream}{stamp}-{self._count}{SUFFIX}"

  def _open(self) -> BinaryIO:
    now = self._clock()
    if now < self._retry_at:
      raise status.unavailable(
          f"Request log file under {self._prefix} failed; retrying shortly"
      )
    directory = os.path.dirname(self._prefix)
    if directory:
      os.makedirs(directory, exist_ok=True)
    while True:
      path = self._name(now)
      self._count += 1
      try:
        # Exclusive: two collectors on one prefix never share a file.
        f = open(  # pylint: disable=consider-using-with
            path, "xb", buffering=WRITE_BUFFER_BYTES
        )
      except FileExistsError:
        continue
      break
    self._file, self.path = f, path
    self._opened_at, self._size = now, 0
    return f

  def _close(self) -> None:
    f, self._file = self._file, None
    if f is not None:
      try:
        f.close()
      except OSError:
        pass  # Already reported by the write that failed.

  def collect_message(self, message: bytes) -> None:
    record = frame(message)
    f = self._file
    if f is not None and (
        self._size + len(record) > self._options.max_file_bytes
        or self._clock() - self._opened_at >= self._options.max_file_age_s
    ):
      self._close()
      f = None
    if f is None:
      f = self._open()
    try:
      f.write(record)
    except OSError:
      self._close()
      self._retry_at = self._clock() + self._options.retry_interval_s
      raise
    self._size += len(record)

  def flush(self) -> None:
    f = self._file
    if f is None:
      return
    if self._clock() - self._opened_at >= self._options.max_file_age_s:
      self._close()
      return
    try:
      f.flush()
    except OSError:
      self._close()
      self._retry_at = self._clock() + self._options.retry_interval_s
      raise

  def close(self) -> None:
    f = self._file
    if f is not None:
      try:
        f.flush()
      finally:
        self._close()


def factory(
    options: RotationOptions,
) -> log_collector.Factory:
  """The `tfrecord` type's factory, with the server's rotation settings."""

  def make(
      config: log_collector.LogCollectorConfig,
      context: log_collector.CollectorContext,
  ) -> log_collector.LogCollector:
    return TFRecordLogCollector(config.filename_prefix, context.stream, options)

  return make
