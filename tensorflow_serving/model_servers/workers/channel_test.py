"""The supervisor channel's framing: round trips, EOF, and bounded lengths."""

from __future__ import annotations

import asyncio
import socket
import struct

from absl.testing import absltest

from tensorflow_serving.model_servers.workers import channel


class ChannelTest(absltest.TestCase):

  def test_round_trip_blocking_and_async(self):
    a, b = socket.socketpair()
    with a, b:
      a.sendall(channel.encode({"type": "x", "id": 7}, b"\x00payload"))
      a.sendall(channel.encode({"type": "y"}))
      self.assertEqual(
          channel.read_blocking(b), ({"type": "x", "id": 7}, b"\x00payload")
      )

      async def read_async():
        reader, writer = await asyncio.open_unix_connection(sock=b)
        try:
          first = await channel.read(reader)
          a.close()
          return first, await channel.read(reader)
        finally:
          writer.close()

      first, after_close = asyncio.run(read_async())
    self.assertEqual(first, ({"type": "y"}, b""))
    self.assertIsNone(after_close)

  def test_eof_mid_message_is_end_of_stream(self):
    a, b = socket.socketpair()
    with a, b:
      a.sendall(channel.encode({"type": "x"}, b"abc")[:-1])
      a.close()
      self.assertIsNone(channel.read_blocking(b))

  def test_lengths_are_bounded(self):
    a, b = socket.socketpair()
    with a, b:
      a.sendall(struct.pack(">II", channel.MAX_HEADER_BYTES + 1, 0))
      with self.assertRaises(channel.ChannelError):
        channel.read_blocking(b)

  def test_a_header_must_be_an_object_with_a_type(self):
    a, b = socket.socketpair()
    with a, b:
      a.sendall(struct.pack(">II", 2, 0) + b"[]")
      with self.assertRaises(channel.ChannelError):
        channel.read_blocking(b)

  def test_join_and_split(self):
    sizes, blob = channel.join([b"ab", b"", b"cde"])
    self.assertEqual(channel.split(sizes, blob), [b"ab", b"", b"cde"])
    with self.assertRaises(channel.ChannelError):
      channel.split([1, 1], b"abc")


if __name__ == "__main__":
  absltest.main()
