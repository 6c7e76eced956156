"""The tfrecord collector: framing, file names, rotation, failures."""

from __future__ import annotations

import os
import struct
import tempfile

from absl.testing import absltest

from tensorflow_serving.core import tfrecord_log_collector as tfr
from tensorflow_serving.util import status


class FakeClock:

  def __init__(self, now: float = 1_796_608_984.0):  # 2026-12-07T02:03:04Z
    self.now = now

  def __call__(self) -> float:
    return self.now


class FramingTest(absltest.TestCase):

  def test_masked_crc32c_of_known_input(self):
    # TensorFlow's crc32c::Mask of CRC-32C("123456789") = 0xE3069283.
    crc = 0xE3069283
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    self.assertEqual(tfr.masked_crc32c(b"123456789"), masked)

  def test_frame_layout(self):
    framed = tfr.frame(b"abc")
    self.assertLen(framed, 8 + 4 + 3 + 4)
    self.assertEqual(struct.unpack("<Q", framed[:8])[0], 3)
    self.assertEqual(framed[12:15], b"abc")
    self.assertEqual(
        struct.unpack("<I", framed[15:])[0], tfr.masked_crc32c(b"abc")
    )


class CollectorTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.clock = FakeClock()

  def files(self) -> list[str]:
    return sorted(os.listdir(self.dir))

  def collector(self, prefix="logs/mnist", stream="", **options):
    return tfr.TFRecordLogCollector(
        os.path.join(self.dir, prefix),
        stream,
        tfr.RotationOptions(**options),
        clock=self.clock,
    )

  def test_writes_readable_records_under_the_prefix(self):
    c = self.collector()
    for i in range(3):
      c.collect_message(b"log%d" % i)
    c.flush()
    self.assertEqual(c.path, os.path.join(self.dir, "logs", self.files_in()))
    self.assertEqual(
        list(tfr.read_records(c.path)), [b"log0", b"log1", b"log2"]
    )
    c.close()

  def files_in(self) -> str:
    (name,) = os.listdir(os.path.join(self.dir, "logs"))
    return name

  def test_file_names_say_prefix_stream_time_and_sequence(self):
    c = self.collector(prefix="m", stream="worker3")
    c.collect_message(b"x")
    c.close()
    self.assertEqual(self.files(), ["m-worker3-20261207T020304Z-0.tfrecord"])

  def test_a_directory_prefix_gets_no_dash(self):
    c = self.collector(prefix="d/")
    c.collect_message(b"x")
    c.close()
    self.assertEqual(
        os.listdir(os.path.join(self.dir, "d")),
        ["20261207T020304Z-0.tfrecord"],
    )

  def test_rotates_by_size(self):
    record_size = len(tfr.frame(b"0123456789"))
    c = self.collector(prefix="m", max_file_bytes=2 * record_size)
    for _ in range(5):
      c.collect_message(b"0123456789")
    c.close()
    names = self.files()
    self.assertEqual(
        names,
        [f"m-20261207T020304Z-{i}.tfrecord" for i in range(3)],
    )
    counts = [
        len(list(tfr.read_records(os.path.join(self.dir, n)))) for n in names
    ]
    self.assertEqual(counts, [2, 2, 1])

  def test_rotates_by_age_on_write_and_closes_old_file_when_idle(self):
    c = self.collector(prefix="m", max_file_age_s=60)
    c.collect_message(b"a")
    self.clock.now += 61
    c.collect_message(b"b")
    self.assertEqual(
        self.files(),
        ["m-20261207T020304Z-0.tfrecord", "m-20261207T020405Z-1.tfrecord"],
    )
    self.clock.now += 61
    c.flush()  # Idle: the old file is closed, nothing new opened.
    self.assertLen(self.files(), 2)
    self.assertEqual(
        list(tfr.read_records(os.path.join(self.dir, self.files()[1]))),
        [b"b"],
    )

  def test_never_overwrites_an_existing_file(self):
    first = self.collector(prefix="m")
    second = self.collector(prefix="m")
    first.collect_message(b"1")
    second.collect_message(b"2")
    first.close()
    second.close()
    self.assertEqual(
        self.files(),
        ["m-20261207T020304Z-0.tfrecord", "m-20261207T020304Z-1.tfrecord"],
    )

  def test_read_records_stops_at_a_truncated_tail(self):
    path = os.path.join(self.dir, "t.tfrecord")
    with open(path, "wb") as f:
      f.write(tfr.frame(b"whole") + tfr.frame(b"partial")[:-3])
    self.assertEqual(list(tfr.read_records(path)), [b"whole"])

  def test_read_records_reports_corruption(self):
    path = os.path.join(self.dir, "c.tfrecord")
    framed = bytearray(tfr.frame(b"data"))
    framed[13] ^= 0xFF
    with open(path, "wb") as f:
      f.write(framed)
    with self.assertRaises(status.ServingError) as ctx:
      list(tfr.read_records(path))
    self.assertEqual(ctx.exception.code, status.Code.DATA_LOSS)

  def test_failed_write_drops_the_file_and_waits_before_a_new_one(self):
    c = self.collector(prefix="m", retry_interval_s=5)
    c.collect_message(b"a")

    class Broken:

      def write(self, data):
        raise OSError(28, "No space left on device")

      def close(self):
        pass

    c._file = Broken()  # pylint: disable=protected-access
    with self.assertRaises(OSError):
      c.collect_message(b"b")
    with self.assertRaises(status.ServingError) as ctx:
      c.collect_message(b"c")  # Within the retry interval.
    self.assertEqual(ctx.exception.code, status.Code.UNAVAILABLE)
    self.clock.now += 6
    c.collect_message(b"d")
    c.close()
    self.assertLen(self.files(), 2)

  def test_empty_prefix_is_refused(self):
    with self.assertRaises(status.ServingError) as ctx:
      tfr.TFRecordLogCollector("")
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)


if __name__ == "__main__":
  absltest.main()
