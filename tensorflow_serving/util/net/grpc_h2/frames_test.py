"""The HPACK we write must decode, with any conforming decoder, to what we meant."""

from absl.testing import absltest
import hpack

from tensorflow_serving.util.net.grpc_h2 import frames as fr


class FramesTest(absltest.TestCase):

  def test_request_header_block_decodes(self):
    block = fr.request_header_block("/pkg.Service/Method", "host:1")
    self.assertEqual(
        hpack.Decoder().decode(block),
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/pkg.Service/Method"),
            (":authority", "host:1"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ],
    )

  def test_response_blocks_decode_without_touching_the_table(self):
    decoder = hpack.Decoder()
    block = fr.response_header_block(fr.literal("grpc-status", "0"))
    self.assertEqual(
        decoder.decode(block),
        [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "0"),
        ],
    )
    self.assertEmpty(decoder.header_table.dynamic_entries)

  def test_long_integers(self):
    self.assertEqual(fr.hpack_int(31, 4), b"\x0f\x10")
    self.assertEqual(fr.hpack_int(1337, 5), b"\x1f\x9a\x0a")
    long_value = "v" * 300
    self.assertEqual(
        hpack.Decoder().decode(fr.literal("k", long_value)), [("k", long_value)]
    )

  def test_percent_encoding(self):
    self.assertEqual(fr.percent_encode("plain text"), b"plain text")
    self.assertEqual(fr.percent_encode("100% ü\n"), b"100%25 %C3%BC%0A")

  def test_header_frames_split_into_continuations(self):
    block = bytes(range(256)) * 100  # 25,600 bytes
    data = fr.header_frames(3, block, True, 16384)
    high, low, kind, flags, stream = fr.HEADER.unpack_from(data, 0)
    self.assertEqual(
        (high << 16 | low, kind, flags, stream),
        (16384, fr.HEADERS, fr.FLAG_END_STREAM, 3),
    )
    second = 9 + 16384
    high, low, kind, flags, stream = fr.HEADER.unpack_from(data, second)
    self.assertEqual(
        (high << 16 | low, kind, flags, stream),
        (len(block) - 16384, fr.CONTINUATION, fr.FLAG_END_HEADERS, 3),
    )
    self.assertEqual(data[9:second] + data[second + 9 :], block)


if __name__ == "__main__":
  absltest.main()
