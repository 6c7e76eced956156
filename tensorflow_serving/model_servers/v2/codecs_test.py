"""The v2 REST and gRPC codecs: request forms to numpy, numpy to answers."""

import json

from absl.testing import absltest
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tritonclient.grpc import service_pb2

from tensorflow_serving.model_servers.v2 import grpc_codec
from tensorflow_serving.model_servers.v2 import rest_codec
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status


def _signature(key: str, dtype: int) -> signature_lib.Signature:
  proto = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
  proto.inputs["x"].name = "x:0"
  proto.inputs["x"].dtype = dtype
  proto.outputs["y"].name = "y:0"
  proto.outputs["y"].dtype = dtype
  proto.outputs["z"].name = "z:0"
  proto.outputs["z"].dtype = types_pb2.DT_STRING
  return signature_lib.Signature.from_proto(key, proto)


SIGS = {
    "serving_default": _signature("serving_default", types_pb2.DT_FLOAT),
    "ints": _signature("ints", types_pb2.DT_UINT64),
}


def lookup(name: str) -> signature_lib.Signature:
  return signature_lib.resolve(SIGS, name, signature_lib.Api.PREDICT_JSON)


def _body(doc) -> bytes:
  return json.dumps(doc).encode()


def _x(data, datatype="FP32", shape=None, **extra):
  tensor = {"name": "x", "datatype": datatype, "data": data, **extra}
  tensor["shape"] = shape if shape is not None else [len(data)]
  return tensor


class RestCodecTest(absltest.TestCase):

  def decode(self, doc, header_length=None, binary=b""):
    body = _body(doc)
    if header_length is not None:
      header_length = str(len(body))
    return rest_codec.decode_infer(body + binary, header_length, lookup)

  def assertBadRequest(self, regex, doc, **kwargs):
    with self.assertRaisesRegex(status.ServingError, regex) as cm:
      self.decode(doc, **kwargs)
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)

  def test_flat_and_nested_data(self):
    flat = self.decode({"inputs": [_x([1, 2, 3, 4], shape=[2, 2])]})
    nested = self.decode({"inputs": [_x([[1, 2], [3, 4]], shape=[2, 2])]})
    for request in (flat, nested):
      self.assertEqual(request.sig.key, "serving_default")
      self.assertEqual(request.inputs["x"].dtype, np.float32)
      np.testing.assert_array_equal(request.inputs["x"], [[1, 2], [3, 4]])

  def test_signature_id_outputs_and_binary_flags(self):
    request = self.decode(
        {
            "id": "r1",
            "parameters": {
                "signature_name": "ints",
                "binary_data_output": True,
            },
            "inputs": [_x([2**64 - 1], "UINT64")],
            "outputs": [
                {"name": "y"},
                {"name": "z", "parameters": {"binary_data": False}},
            ],
        }
    )
    self.assertEqual(request.sig.key, "ints")
    self.assertEqual(request.id, "r1")
    self.assertEqual(request.inputs["x"].tolist(), [2**64 - 1])
    self.assertEqual(request.output_filter, ("y", "z"))
    self.assertTrue(request.wants_binary("y"))
    self.assertFalse(request.wants_binary("z"))

  def test_binary_inputs_follow_the_json_header(self):
    data = np.array([1.5, -2.0], "<f4").tobytes()
    request = self.decode(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        },
        header_length=True,
        binary=data,
    )
    np.testing.assert_array_equal(request.inputs["x"], [1.5, -2.0])

  def test_bad_requests(self):
    self.assertBadRequest("expects FP32", {"inputs": [_x([1.0], "FP64")]})
    self.assertBadRequest(
        "holds 3 elements, data has 2", {"inputs": [_x([1, 2], shape=[3])]}
    )
    self.assertBadRequest(
        "holds non-numeric values", {"inputs": [_x(["a"], shape=[1])]}
    )
    self.assertBadRequest(
        "out of the range of UINT64",
        {
            "parameters": {"signature_name": "ints"},
            "inputs": [_x([-1], "UINT64")],
        },
    )
    self.assertBadRequest(
        "appears more than once", {"inputs": [_x([1]), _x([1])]}
    )
    self.assertBadRequest(
        "has no data",
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]},
    )
    self.assertBadRequest("inputs must be a JSON array", {"inputs": {}})
    self.assertBadRequest(
        'signature name: "nope" not found',
        {"parameters": {"signature_name": "nope"}, "inputs": []},
    )
    self.assertBadRequest(
        "runs past the 4 bytes",
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        },
        header_length=True,
        binary=b"abcd",
    )
    self.assertBadRequest(
        "4 bytes of binary data follow",
        {"inputs": [_x([1])]},
        header_length=True,
        binary=b"abcd",
    )
    with self.assertRaisesRegex(status.ServingError, "failed to parse"):
      rest_codec.decode_infer(b"{", None, lookup)
    with self.assertRaisesRegex(status.ServingError, "byte count within"):
      rest_codec.decode_infer(b"{}", "9", lookup)

  def test_encode_json_and_binary(self):
    request = self.decode({"id": "r", "inputs": [_x([1])]})
    outputs = {
        "y": np.array([[1.5, 2.0]], np.float32),
        "z": np.array([b"ok"], np.object_),
    }
    encoded = rest_codec.encode_infer(request, outputs, "m", 3)
    self.assertIsNone(encoded.header_length)
    self.assertEqual(
        json.loads(encoded.body),
        {
            "model_name": "m",
            "model_version": "3",
            "id": "r",
            "outputs": [
                {
                    "name": "y",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "data": [1.5, 2.0],
                },
                {
                    "name": "z",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": ["ok"],
                },
            ],
        },
    )
    request.binary_default = True
    encoded = rest_codec.encode_infer(request, outputs, "m", 3)
    header = json.loads(encoded.body[: encoded.header_length])
    self.assertEqual(
        [o["parameters"] for o in header["outputs"]],
        [{"binary_data_size": 8}, {"binary_data_size": 6}],
    )
    self.assertEqual(
        encoded.body[encoded.header_length :],
        np.array([1.5, 2.0], "<f4").tobytes() + b"\x02\x00\x00\x00ok",
    )
    self.assertEqual(encoded.content_type, "application/octet-stream")

  def test_error_status_as_triton_maps_it(self):
    self.assertEqual(rest_codec.http_status(status.Code.NOT_FOUND), 404)
    self.assertEqual(rest_codec.http_status(status.Code.INVALID_ARGUMENT), 400)
    self.assertEqual(rest_codec.http_status(status.Code.UNKNOWN), 400)
    self.assertEqual(rest_codec.http_status(status.Code.UNAVAILABLE), 503)
    self.assertEqual(rest_codec.http_status(status.Code.INTERNAL), 500)


class GrpcCodecTest(absltest.TestCase):

  def test_typed_contents_in_typed_contents_out(self):
    request = service_pb2.ModelInferRequest(model_name="m", id="t")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    decoded = grpc_codec.decode_infer(request, lookup)
    np.testing.assert_array_equal(decoded.inputs["x"], [1.0, 2.0])
    response = grpc_codec.encode_infer(
        decoded, {"y": np.array([3.0], np.float32)}, "m", 1
    )
    self.assertEqual(list(response.outputs[0].contents.fp32_contents), [3.0])
    self.assertEqual(len(response.raw_output_contents), 0)
    # FP16 has no typed field: the whole answer is raw.
    response = grpc_codec.encode_infer(
        decoded, {"y": np.array([3.0], np.float16)}, "m", 1
    )
    self.assertEqual(
        list(response.raw_output_contents),
        [np.array([3.0], "<f2").tobytes()],
    )

  def test_raw_contents_in_raw_out_with_signature_parameter(self):
    request = service_pb2.ModelInferRequest(model_name="m")
    request.parameters["signature_name"].string_param = "ints"
    request.inputs.add(name="x", datatype="UINT64", shape=[1])
    request.raw_input_contents.append(np.array([7], "<u8").tobytes())
    decoded = grpc_codec.decode_infer(request, lookup)
    self.assertEqual(decoded.sig.key, "ints")
    self.assertEqual(decoded.inputs["x"].tolist(), [7])
    response = grpc_codec.encode_infer(
        decoded, {"z": np.array([b"a"], np.object_)}, "m", 1
    )
    self.assertEqual(list(response.raw_output_contents), [b"\x01\x00\x00\x00a"])

  def test_bad_requests(self):
    request = service_pb2.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[3])
    tensor.contents.fp32_contents.extend([1.0])
    with self.assertRaisesRegex(status.ServingError, "has 1"):
      grpc_codec.decode_infer(request, lookup)
    tensor.contents.Clear()
    tensor.contents.int_contents.extend([1, 2, 3])
    with self.assertRaisesRegex(
        status.ServingError, "not contents.int_contents"
    ):
      grpc_codec.decode_infer(request, lookup)
    request.raw_input_contents.extend([b"", b""])
    with self.assertRaisesRegex(status.ServingError, "2 buffers for 1 inputs"):
      grpc_codec.decode_infer(request, lookup)
    request = service_pb2.ModelInferRequest(model_name="m")
    request.parameters["signature_name"].string_param = "ints"
    tensor = request.inputs.add(name="x", datatype="UINT8", shape=[1])
    with self.assertRaisesRegex(status.ServingError, "expects UINT64"):
      grpc_codec.decode_infer(request, lookup)


if __name__ == "__main__":
  absltest.main()
