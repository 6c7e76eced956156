"""Budgets, token buckets and capped decompression."""

from __future__ import annotations

import asyncio
import gzip
import zlib

from absl.testing import absltest

from tensorflow_serving.util.net import budget
from tensorflow_serving.util.net import inflate
from tensorflow_serving.util.net import rate


class InflateTest(absltest.TestCase):

  def test_round_trip_within_the_cap(self):
    data = b"abc" * 1000
    self.assertEqual(inflate.inflate(gzip.compress(data), 31, 3000), data)
    self.assertEqual(inflate.inflate(zlib.compress(data), 15, 3000), data)

  def test_bomb_stops_one_byte_past_the_cap(self):
    bomb = gzip.compress(b"\0" * (50 << 20))  # ~50 KB that inflates to 50 MB
    with self.assertRaises(inflate.TooLarge):
      inflate.inflate(bomb, 31, 1 << 20)
    with self.assertRaises(inflate.TooLarge):
      asyncio.run(inflate.inflate_async(bomb, 31, 1 << 20, step=1 << 16))

  def test_async_yields_and_matches(self):
    data = bytes(range(256)) * 40000
    packed = gzip.compress(data)
    self.assertEqual(
        asyncio.run(inflate.inflate_async(packed, 31, len(data), step=4096)),
        data,
    )

  def test_large_output_grows_one_buffer_in_steps(self):
    # Many input slices and output steps, every byte where it belongs.
    data = bytes(range(256)) * 8000 + b"\0" * (3 << 20)
    packed = gzip.compress(data)
    for result in (
        inflate.inflate(packed, 31, len(data), step=1 << 16),
        asyncio.run(inflate.inflate_async(packed, 31, len(data), step=4096)),
    ):
      self.assertIsInstance(result, bytearray)
      self.assertEqual(result, data)
    with self.assertRaises(inflate.TooLarge):
      inflate.inflate(packed, 31, len(data) - 1, step=1 << 16)

  def test_empty_and_trailing_bytes(self):
    self.assertEqual(inflate.inflate(gzip.compress(b""), 31, 10), b"")
    # Bytes after the stream's end are ignored, as zlib.decompressobj does.
    self.assertEqual(
        inflate.inflate(zlib.compress(b"abc") + b"junk", 15, 10), b"abc"
    )

  def test_truncated_stream_is_an_error(self):
    packed = gzip.compress(b"x" * 1000)[:-6]
    with self.assertRaises(zlib.error):
      inflate.inflate(packed, 31, 10000)
    with self.assertRaises(zlib.error):
      asyncio.run(inflate.inflate_async(packed, 31, 10000))


class TokenBucketTest(absltest.TestCase):

  def test_burst_then_rate(self):
    now = [0.0]
    bucket = rate.TokenBucket(3, 2.0, lambda: now[0])
    self.assertEqual([bucket.take() for _ in range(4)], [1, 1, 1, 0])
    now[0] += 1.0  # two more
    self.assertEqual([bucket.take() for _ in range(3)], [1, 1, 0])


class BudgetTest(absltest.TestCase):

  def test_waiters_wake_once_room_frees(self):
    pool = budget.Budget(100)
    woken = []
    pool.add(150)
    pool.wait(1, lambda: woken.append(1))
    pool.release(20)  # 130: still over
    self.assertEqual(woken, [])
    pool.release(40)
    self.assertEqual(woken, [1])
    pool.release(10)
    self.assertEqual(woken, [1])


if __name__ == "__main__":
  absltest.main()
