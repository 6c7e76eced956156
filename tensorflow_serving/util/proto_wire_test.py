"""proto_wire's fields parse as the protobuf library writes them."""

from __future__ import annotations

from absl.testing import absltest
from google.protobuf import wrappers_pb2

from tensorflow_serving.util import proto_wire


class ProtoWireTest(absltest.TestCase):

  def test_varint_fields_match_the_library(self):
    for value in (
        1,
        127,
        128,
        300,
        16383,
        16384,
        2**21 - 1,
        2**21,
        2**31,
        2**63 - 1,
        -1,
        -(2**63),
    ):
      self.assertEqual(
          proto_wire.uint(1, value),
          wrappers_pb2.Int64Value(value=value).SerializeToString(),
          value,
      )
    self.assertEqual(
        proto_wire.uint(1, 2**64 - 1),
        wrappers_pb2.UInt64Value(value=2**64 - 1).SerializeToString(),
    )
    self.assertEqual(
        proto_wire.uint(1, 1),
        wrappers_pb2.BoolValue(value=True).SerializeToString(),
    )

  def test_zero_is_written(self):
    # Callers decide about proto3 defaults (a oneof member's zero is kept).
    self.assertEqual(proto_wire.uint(3, 0), b"\x18\x00")

  def test_length_delimited_and_double_match_the_library(self):
    for text in ("a", "é" * 100, "x" * 300):
      self.assertEqual(
          proto_wire.string(1, text),
          wrappers_pb2.StringValue(value=text).SerializeToString(),
      )
    self.assertEqual(
        proto_wire.length_delimited(1, b"\x00" * 200),
        wrappers_pb2.BytesValue(value=b"\x00" * 200).SerializeToString(),
    )
    self.assertEqual(
        proto_wire.double(1, 0.1),
        wrappers_pb2.DoubleValue(value=0.1).SerializeToString(),
    )

  def test_fixed_width_and_large_field_numbers(self):
    # The spec: tag = field << 3 | wire type, as a varint; little endian.
    self.assertEqual(proto_wire.fixed64(7, 1), b"\x39" + b"\x01" + b"\0" * 7)
    self.assertEqual(proto_wire.fixed32(16, 0x100), b"\x85\x01\0\x01\0\0")
    self.assertEqual(proto_wire.tag(15, proto_wire.LEN), b"\x7a")


if __name__ == "__main__":
  absltest.main()
