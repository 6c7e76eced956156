"""Tests for tensor_codec, checked against tf.make_tensor_proto/make_ndarray."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import status

_NUMERIC_DTYPES = [
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.float16,
    tf.bfloat16.as_numpy_dtype,
    np.complex64,
    np.complex128,
]


def _sample(dtype, shape=(2, 3, 4)) -> np.ndarray:
  rng = np.random.default_rng(42)
  dtype = np.dtype(dtype)
  if dtype == np.bool_:
    return rng.integers(0, 2, shape).astype(bool)
  if dtype.kind in "iu":
    info = np.iinfo(dtype)
    # Extremes included so sign extension and 10-byte varints get exercised.
    values = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    values.flat[0] = info.min
    values.flat[-1] = info.max
    return values
  if dtype.kind == "c":
    return (
        rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ).astype(dtype)
  values = (rng.standard_normal(shape) * 100).astype(dtype)
  values.flat[1] = np.inf
  values.flat[2] = -np.inf
  return values


def _assert_same(test, actual: np.ndarray, expected: np.ndarray):
  test.assertEqual(actual.dtype, expected.dtype)
  test.assertEqual(actual.shape, expected.shape)
  if expected.dtype.kind in "fc" or expected.dtype.name == "bfloat16":
    np.testing.assert_array_equal(
        actual.astype(np.complex128), expected.astype(np.complex128)
    )
  else:
    np.testing.assert_array_equal(actual, expected)


class RoundTripTest(parameterized.TestCase):

  @parameterized.product(
      dtype=_NUMERIC_DTYPES, use_tensor_content=[False, True]
  )
  def test_encode_decodes_with_tf(self, dtype, use_tensor_content):
    arr = _sample(dtype)
    proto = tensor_codec.ndarray_to_tensor_proto(
        arr, use_tensor_content=use_tensor_content
    )
    self.assertEqual(proto.dtype, tf.as_dtype(arr.dtype).as_datatype_enum)
    self.assertEqual([d.size for d in proto.tensor_shape.dim], [2, 3, 4])
    self.assertEqual(bool(proto.tensor_content), use_tensor_content)
    _assert_same(self, tf.make_ndarray(proto), arr)
    _assert_same(self, tensor_codec.tensor_proto_to_ndarray(proto), arr)
    # And after a trip over the wire.
    wire = tensor_pb2.TensorProto.FromString(proto.SerializeToString())
    _assert_same(self, tensor_codec.tensor_proto_to_ndarray(wire), arr)

  @parameterized.parameters(*_NUMERIC_DTYPES)
  def test_decodes_tf_made_protos(self, dtype):
    arr = _sample(dtype)
    _assert_same(
        self,
        tensor_codec.tensor_proto_to_ndarray(tf.make_tensor_proto(arr)),
        arr,
    )

  @parameterized.parameters(*_NUMERIC_DTYPES)
  def test_typed_field_matches_tf_layout(self, dtype):
    # The field TF's C++ Tensor::AsProtoField writes for each dtype.
    arr = _sample(dtype, shape=(5,))
    ours = tensor_codec.ndarray_to_tensor_proto(arr)
    populated = [f.name for f, _ in ours.ListFields()]
    self.assertNotIn("tensor_content", populated)
    expected_field = {
        np.float32: "float_val",
        np.float64: "double_val",
        np.int8: "int_val",
        np.int16: "int_val",
        np.int32: "int_val",
        np.uint8: "int_val",
        np.uint16: "int_val",
        np.int64: "int64_val",
        np.uint32: "uint32_val",
        np.uint64: "uint64_val",
        np.bool_: "bool_val",
        np.float16: "half_val",
        np.complex64: "scomplex_val",
        np.complex128: "dcomplex_val",
    }.get(dtype, "half_val")
    self.assertIn(expected_field, populated)

  def test_large_varints_both_encoders(self):
    # Above the vectorisation threshold, with 1- to 5-byte varints.
    arr = np.arange(0, 1 << 33, (1 << 33) // 5000, dtype=np.int64)
    self.assertGreater(arr.size, tensor_codec._VECTORIZE_MIN_ELEMENTS)
    proto = tensor_codec.ndarray_to_tensor_proto(arr)
    np.testing.assert_array_equal(proto.int64_val, arr)
    self.assertEqual(
        tensor_pb2.TensorProto(int64_val=arr.tolist()).SerializeToString(),
        tensor_pb2.TensorProto(int64_val=proto.int64_val).SerializeToString(),
    )
    # Negative numbers (10-byte varints) go through upb.
    neg = -arr
    np.testing.assert_array_equal(
        tensor_codec.ndarray_to_tensor_proto(neg).int64_val, neg
    )
    # Small values take the one-byte path.
    small = np.arange(5000, dtype=np.int32) % 100
    np.testing.assert_array_equal(
        tensor_codec.ndarray_to_tensor_proto(small).int_val, small
    )

  def test_scalar(self):
    proto = tensor_codec.ndarray_to_tensor_proto(np.float32(2.5))
    self.assertEqual(proto, tf.make_tensor_proto(np.float32(2.5)))
    self.assertTrue(proto.HasField("tensor_shape"))
    value = tensor_codec.tensor_proto_to_ndarray(proto)
    self.assertEqual(value.shape, ())
    self.assertEqual(value, 2.5)

  def test_float_proto_equals_tf(self):
    arr = np.array([[1.5, 2.0], [0.1, -3.0]], dtype=np.float32)
    # tf.make_tensor_proto packs floats into tensor_content.
    self.assertEqual(
        tensor_codec.ndarray_to_tensor_proto(arr, use_tensor_content=True),
        tf.make_tensor_proto(arr),
    )

  def test_empty(self):
    arr = np.zeros((0, 3), dtype=np.float32)
    proto = tensor_codec.ndarray_to_tensor_proto(arr)
    self.assertEqual([d.size for d in proto.tensor_shape.dim], [0, 3])
    _assert_same(self, tensor_codec.tensor_proto_to_ndarray(proto), arr)
    _assert_same(self, tf.make_ndarray(proto), arr)

  def test_non_contiguous_and_big_endian(self):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4).T
    _assert_same(
        self,
        tensor_codec.tensor_proto_to_ndarray(
            tensor_codec.ndarray_to_tensor_proto(arr)
        ),
        arr,
    )
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    for use_tensor_content in (False, True):
      proto = tensor_codec.ndarray_to_tensor_proto(
          big, use_tensor_content=use_tensor_content
      )
      self.assertEqual(proto.dtype, types_pb2.DT_INT32)
      np.testing.assert_array_equal(tf.make_ndarray(proto), big)

  def test_out_is_cleared_and_filled(self):
    out = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[b"stale"]
    )
    result = tensor_codec.ndarray_to_tensor_proto(
        np.array([1, 2], dtype=np.int32), out=out
    )
    self.assertIs(result, out)
    self.assertEqual(out.dtype, types_pb2.DT_INT32)
    self.assertEqual(list(out.int_val), [1, 2])
    self.assertEmpty(out.string_val)


class StringTest(absltest.TestCase):

  def test_object_bytes(self):
    arr = np.array([[b"a", b""], [b"\x00\xff", b"hello"]], dtype=object)
    proto = tensor_codec.ndarray_to_tensor_proto(arr)
    self.assertEqual(proto.dtype, types_pb2.DT_STRING)
    self.assertEqual(list(proto.string_val), [b"a", b"", b"\x00\xff", b"hello"])
    np.testing.assert_array_equal(tf.make_ndarray(proto), arr)
    decoded = tensor_codec.tensor_proto_to_ndarray(proto)
    self.assertEqual(decoded.dtype, object)
    np.testing.assert_array_equal(decoded, arr)
    np.testing.assert_array_equal(
        tensor_codec.tensor_proto_to_ndarray(tf.make_tensor_proto(arr)), arr
    )

  def test_str_and_numpy_string_dtypes(self):
    mixed = np.array(["héllo", b"raw"], dtype=object)
    self.assertEqual(
        list(tensor_codec.ndarray_to_tensor_proto(mixed).string_val),
        ["héllo".encode(), b"raw"],
    )
    self.assertEqual(
        list(
            tensor_codec.ndarray_to_tensor_proto(
                np.array(["ab", "c"])
            ).string_val
        ),
        [b"ab", b"c"],
    )
    self.assertEqual(
        list(
            tensor_codec.ndarray_to_tensor_proto(
                np.array([b"ab", b"c"])
            ).string_val
        ),
        [b"ab", b"c"],
    )

  def test_tensor_content_flag_ignored_for_strings(self):
    proto = tensor_codec.ndarray_to_tensor_proto(
        np.array([b"x"], dtype=object), use_tensor_content=True
    )
    self.assertFalse(proto.tensor_content)
    self.assertEqual(list(proto.string_val), [b"x"])

  def test_decodes_packed_string_content(self):
    # TF's encoding: varint lengths first, then the bytes.
    proto = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 3}]),
        tensor_content=b"\x01\x00\x02" + b"a" + b"bc",
    )
    self.assertEqual(
        tensor_codec.tensor_proto_to_ndarray(proto).tolist(), [b"a", b"", b"bc"]
    )
    proto.tensor_content = b"\x01\x00\x02" + b"a" + b"b"
    with self.assertRaises(status.ServingError) as cm:
      tensor_codec.tensor_proto_to_ndarray(proto)
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)


def _typed(dtype: int, shape: list[int], **fields) -> tensor_pb2.TensorProto:
  return tensor_pb2.TensorProto(
      dtype=dtype,
      tensor_shape=tensor_shape_pb2.TensorShapeProto(
          dim=[{"size": d} for d in shape]
      ),
      **fields,
  )


class BroadcastTest(parameterized.TestCase):

  @parameterized.parameters(
      (types_pb2.DT_FLOAT, "float_val", [1.5], np.float32),
      (types_pb2.DT_DOUBLE, "double_val", [2.5], np.float64),
      (types_pb2.DT_INT32, "int_val", [7], np.int32),
      (types_pb2.DT_INT8, "int_val", [-3], np.int8),
      (types_pb2.DT_UINT8, "int_val", [200], np.uint8),
      (types_pb2.DT_INT64, "int64_val", [1 << 40], np.int64),
      (types_pb2.DT_UINT64, "uint64_val", [1 << 63], np.uint64),
      (types_pb2.DT_BOOL, "bool_val", [True], np.bool_),
      (types_pb2.DT_STRING, "string_val", [b"s"], object),
  )
  def test_single_value_broadcasts_like_tf(
      self, dtype, field, values, np_dtype
  ):
    proto = _typed(dtype, [2, 3], **{field: values})
    arr = tensor_codec.tensor_proto_to_ndarray(proto)
    self.assertEqual(arr.dtype, np.dtype(np_dtype))
    self.assertEqual(arr.shape, (2, 3))
    np.testing.assert_array_equal(arr, np.full((2, 3), values[0], np_dtype))
    np.testing.assert_array_equal(arr, tf.make_ndarray(proto))

  def test_fewer_values_repeat_the_last(self):
    proto = _typed(types_pb2.DT_FLOAT, [5], float_val=[1, 2])
    np.testing.assert_array_equal(
        tensor_codec.tensor_proto_to_ndarray(proto), [1, 2, 2, 2, 2]
    )
    np.testing.assert_array_equal(tf.make_ndarray(proto), [1, 2, 2, 2, 2])

  def test_no_values_means_zeros(self):
    arr = tensor_codec.tensor_proto_to_ndarray(
        _typed(types_pb2.DT_INT64, [2, 2])
    )
    np.testing.assert_array_equal(arr, np.zeros((2, 2), np.int64))
    strings = tensor_codec.tensor_proto_to_ndarray(
        _typed(types_pb2.DT_STRING, [2])
    )
    self.assertEqual(strings.tolist(), [b"", b""])

  def test_surplus_values_are_ignored_like_cpp(self):
    proto = _typed(types_pb2.DT_FLOAT, [2], float_val=[1, 2, 3])
    np.testing.assert_array_equal(
        tensor_codec.tensor_proto_to_ndarray(proto), [1, 2]
    )

  def test_half_and_complex_broadcast(self):
    half = _typed(
        types_pb2.DT_HALF, [3], half_val=[int(np.float16(1.5).view(np.uint16))]
    )
    np.testing.assert_array_equal(
        tensor_codec.tensor_proto_to_ndarray(half), np.full(3, 1.5, np.float16)
    )
    cplx = _typed(types_pb2.DT_COMPLEX64, [2], scomplex_val=[1, 2])
    np.testing.assert_array_equal(
        tensor_codec.tensor_proto_to_ndarray(cplx),
        np.full(2, 1 + 2j, np.complex64),
    )
    np.testing.assert_array_equal(
        tf.make_ndarray(cplx), np.full(2, 1 + 2j, np.complex64)
    )


class MalformedTest(parameterized.TestCase):

  def assert_invalid(self, proto, pattern):
    with self.assertRaisesRegex(status.ServingError, pattern) as cm:
      tensor_codec.tensor_proto_to_ndarray(proto)
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)

  def test_content_size_mismatch(self):
    self.assert_invalid(
        _typed(types_pb2.DT_FLOAT, [2, 2], tensor_content=b"\x00" * 12),
        r"tensor_content has 12 bytes but a float tensor of shape \[2,2\] "
        r"needs 16",
    )

  def test_content_for_empty_shape(self):
    self.assert_invalid(
        _typed(types_pb2.DT_INT32, [0], tensor_content=b"\x00" * 4), "needs 0"
    )

  @parameterized.parameters(
      types_pb2.DT_INVALID,
      types_pb2.DT_RESOURCE,
      types_pb2.DT_VARIANT,
      types_pb2.DT_QINT8,
      99,
  )
  def test_unsupported_dtype(self, dtype):
    self.assert_invalid(_typed(dtype, [1]), "Unsupported tensor dtype")

  def test_negative_dim(self):
    self.assert_invalid(
        _typed(types_pb2.DT_FLOAT, [-1, 2]), "negative dimension"
    )

  def test_unknown_rank(self):
    proto = _typed(types_pb2.DT_FLOAT, [])
    proto.tensor_shape.unknown_rank = True
    self.assert_invalid(proto, "unknown rank")

  def test_unsupported_numpy_dtype(self):
    with self.assertRaises(status.ServingError) as cm:
      tensor_codec.ndarray_to_tensor_proto(
          np.array(["2020"], dtype="datetime64[D]")
      )
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)


class DtypeHelpersTest(absltest.TestCase):

  def test_enum_values_match_types_pb2(self):
    for name, value in types_pb2.DataType.items():
      if value < 100 and value in tensor_codec.DTYPE_NAMES:
        self.assertEqual(
            tensor_codec.DTYPE_NAMES[value], name[len("DT_") :].lower(), name
        )
    for dtype in _NUMERIC_DTYPES:
      self.assertEqual(
          tensor_codec.dtype_enum(dtype), tf.as_dtype(dtype).as_datatype_enum
      )
      self.assertEqual(
          tensor_codec.numpy_dtype(tf.as_dtype(dtype).as_datatype_enum),
          np.dtype(dtype),
      )
    self.assertEqual(tensor_codec.dtype_enum(object), types_pb2.DT_STRING)
    self.assertEqual(
        tensor_codec.numpy_dtype(types_pb2.DT_STRING), np.dtype(object)
    )

  def test_field_numbers_match_descriptor(self):
    fields = tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name
    for kind in tensor_codec._BY_ENUM.values():
      self.assertEqual(fields[kind.field].number, kind.field_number)
    self.assertEqual(fields["dtype"].number, tensor_codec._F_DTYPE)
    self.assertEqual(fields["tensor_shape"].number, tensor_codec._F_SHAPE)
    self.assertEqual(fields["tensor_content"].number, tensor_codec._F_CONTENT)
    shape_fields = tensor_shape_pb2.TensorShapeProto.DESCRIPTOR
    self.assertEqual(
        shape_fields.fields_by_name["dim"].number, tensor_codec._F_SHAPE_DIM
    )
    self.assertEqual(
        shape_fields.nested_types_by_name["Dim"].fields_by_name["size"].number,
        tensor_codec._F_DIM_SIZE,
    )


if __name__ == "__main__":
  absltest.main()
