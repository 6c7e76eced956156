"""Checks the hand-written Predict codec against the generated protos."""

from __future__ import annotations

from absl.testing import absltest
import numpy as np

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.tools.benchmark import wire


def _response(
    values: np.ndarray, as_content: bool
) -> predict_pb2.PredictResponse:
  response = predict_pb2.PredictResponse()
  response.model_spec.name = "mnist"
  response.model_spec.version.value = 7
  response.model_spec.signature_name = "predict_images"
  for name, array in (
      ("other", np.arange(3, dtype=np.float32)),
      ("scores", values),
  ):
    tensor = response.outputs[name]
    tensor.dtype = wire.DT_FLOAT
    for size in array.shape:
      tensor.tensor_shape.dim.add(size=size)
    if as_content:
      tensor.tensor_content = array.astype("<f4").tobytes()
    else:
      tensor.float_val.extend(array.ravel().tolist())
  return response


class WireTest(absltest.TestCase):

  def test_request_parses_as_predict_request(self):
    image = np.random.RandomState(0).rand(1, 784).astype(np.float32)
    raw = wire.encode_predict_request(
        "mnist", "predict_images", {"images": image}
    )
    request = predict_pb2.PredictRequest.FromString(raw)
    self.assertEqual(request.model_spec.name, "mnist")
    self.assertEqual(request.model_spec.signature_name, "predict_images")
    tensor = request.inputs["images"]
    self.assertEqual(tensor.dtype, wire.DT_FLOAT)
    self.assertEqual([d.size for d in tensor.tensor_shape.dim], [1, 784])
    np.testing.assert_array_equal(
        np.frombuffer(tensor.tensor_content, "<f4").reshape(1, 784), image
    )

  def test_request_without_signature_leaves_it_unset(self):
    raw = wire.encode_predict_request("m", "", {"x": np.zeros((2, 3))})
    request = predict_pb2.PredictRequest.FromString(raw)
    self.assertEqual(request.model_spec.signature_name, "")
    self.assertEqual(
        [d.size for d in request.inputs["x"].tensor_shape.dim], [2, 3]
    )

  def test_decodes_tensor_content_and_float_val(self):
    values = np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10)
    for as_content in (True, False):
      raw = _response(values, as_content).SerializeToString()
      np.testing.assert_array_equal(
          wire.decode_predict_output(raw, "scores"), values.ravel()
      )

  def test_decodes_unpacked_float_val(self):
    # Field 5 as separate fixed32 entries (legal, if unusual, on the wire).
    tensor = b"\x08\x01" + b"".join(
        b"\x2d" + np.float32(v).tobytes() for v in (0.5, 0.25)
    )
    entry = b"\x0a\x06scores\x12" + bytes([len(tensor)]) + tensor
    raw = b"\x0a" + bytes([len(entry)]) + entry
    np.testing.assert_array_equal(
        wire.decode_predict_output(raw, "scores"), [0.5, 0.25]
    )

  def test_missing_output_and_garbage_raise(self):
    raw = _response(np.zeros((1, 10), np.float32), True).SerializeToString()
    with self.assertRaises(wire.WireError):
      wire.decode_predict_output(raw, "probabilities")
    only = predict_pb2.PredictResponse()
    only.outputs["scores"].CopyFrom(
        predict_pb2.PredictResponse.FromString(raw).outputs["scores"]
    )
    with self.assertRaises(wire.WireError):
      wire.decode_predict_output(only.SerializeToString()[:-3], "scores")
    with self.assertRaises(wire.WireError):
      wire.decode_predict_output(b"\x0a\xff\xff", "scores")

  def test_rejects_non_float_output(self):
    response = predict_pb2.PredictResponse()
    response.outputs["scores"].dtype = 9  # DT_INT64
    response.outputs["scores"].int64_val.extend([1, 2])
    with self.assertRaises(wire.WireError):
      wire.decode_predict_output(response.SerializeToString(), "scores")


class OutputReaderTest(absltest.TestCase):

  def test_reuses_the_layout_only_when_it_still_applies(self):
    read = wire.OutputReader("scores")
    rng = np.random.RandomState(0)
    for as_content in (True, False, True):
      for _ in range(3):
        values = rng.rand(1, 10).astype(np.float32)
        raw = _response(values, as_content).SerializeToString()
        np.testing.assert_array_equal(
            np.frombuffer(read(raw), "<f4"), values.ravel()
        )
    # Same length, different structure around the values: parsed afresh.
    values = rng.rand(1, 10).astype(np.float32)
    other = _response(values, True)
    other.model_spec.version.value = 8
    np.testing.assert_array_equal(
        np.frombuffer(read(other.SerializeToString()), "<f4"), values.ravel()
    )
    with self.assertRaises(wire.WireError):
      read(b"\x0a\x03abc")


if __name__ == "__main__":
  absltest.main()
