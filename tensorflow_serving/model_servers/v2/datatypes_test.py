"""The v2 datatype table and the protocol's binary tensor forms."""

from absl.testing import absltest
import numpy as np
from tensorflow.core.framework import types_pb2

from tensorflow_serving.model_servers.v2 import datatypes
from tensorflow_serving.util import status


class DatatypesTest(absltest.TestCase):

  def test_every_datatype_maps_to_tensorflow_and_back(self):
    for name in datatypes.DATATYPES:
      dtype = datatypes.numpy_dtype(name)
      self.assertEqual(datatypes.from_numpy(dtype), name)
    self.assertEqual(datatypes.from_tf(types_pb2.DT_HALF), "FP16")
    self.assertEqual(datatypes.from_tf(types_pb2.DT_STRING), "BYTES")
    self.assertIsNone(datatypes.from_tf(types_pb2.DT_COMPLEX64))

  def test_unknown_datatype_is_a_bad_request(self):
    with self.assertRaisesRegex(status.ServingError, "invalid datatype 'FP8'"):
      datatypes.numpy_dtype("FP8")

  def test_bytes_round_trip_is_length_prefixed_little_endian(self):
    array = np.array([b"ab", b"", "é"], dtype=np.object_)
    blob = datatypes.serialize_bytes(array)
    self.assertEqual(
        blob, b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x02\x00\x00\x00\xc3\xa9"
    )
    back = datatypes.from_buffer(blob, "BYTES", [3], "input 'x'")
    self.assertEqual(back.tolist(), [b"ab", b"", "é".encode()])

  def test_truncated_or_long_bytes_are_refused(self):
    blob = datatypes.serialize_bytes(np.array([b"abc"], dtype=np.object_))
    with self.assertRaisesRegex(status.ServingError, "ends inside element 0"):
      datatypes.from_buffer(blob[:-1], "BYTES", [1], "input 'x'")
    with self.assertRaisesRegex(status.ServingError, "1 bytes left"):
      datatypes.from_buffer(blob + b"z", "BYTES", [1], "input 'x'")

  def test_fixed_size_buffer_must_match_the_shape(self):
    data = np.array([1.5, 2.5], "<f4").tobytes()
    np.testing.assert_array_equal(
        datatypes.from_buffer(data, "FP32", [2, 1], "x"), [[1.5], [2.5]]
    )
    with self.assertRaisesRegex(
        status.ServingError, "expected 12 bytes of FP32 data for shape"
    ):
      datatypes.from_buffer(data, "FP32", [3], "x")
    with self.assertRaisesRegex(status.ServingError, "non-negative integers"):
      datatypes.from_buffer(data, "FP32", [-2], "x")

  def test_to_buffer_is_little_endian(self):
    array = np.array([1, 256], dtype=">u2")
    self.assertEqual(datatypes.to_buffer(array), b"\x01\x00\x00\x01")
    self.assertEqual(datatypes.to_buffer(np.array([True, False])), b"\x01\x00")


if __name__ == "__main__":
  absltest.main()
