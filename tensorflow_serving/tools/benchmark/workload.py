"""What the load generator sends, and how it checks what comes back.

Requests are MNIST test images, one per call, serialized once before the
clock starts; answers are checked against the in-process scores of the same
image (compare.py writes them), so a server that answers fast but wrong, or
answers one request with another's scores, fails its row.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import json
from typing import Any

from google.protobuf import message as message_lib
import numpy as np
from tritonclient.grpc import service_pb2

from tensorflow_serving.example import mnist_input_data
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import wire

ErrorKind = str | None


@dataclasses.dataclass(frozen=True)
class Workload:
  """The images, their pre-serialized request bodies, and expected scores."""

  images: np.ndarray
  bodies: list[bytes]
  expected: np.ndarray | None


def load_images(config: load_config.LoadConfig) -> np.ndarray:
  """MNIST test images (float32 [n, 784]), read as the tutorial reads them."""
  images = mnist_input_data.read_data_sets(config.mnist_dir).test.images
  if config.num_images:
    images = images[: config.num_images]
  if not len(images):
    raise ValueError("no MNIST test images to send")
  return images


def rest_body(config: load_config.LoadConfig, image: np.ndarray) -> bytes:
  """The JSON a typical client posts: row format, one instance."""
  return json.dumps(
      {
          "signature_name": config.signature_name,
          "instances": [image.tolist()],
      }
  ).encode()


def grpc_body(config: load_config.LoadConfig, image: np.ndarray) -> bytes:
  """A serialized PredictRequest carrying one image (tensor_content)."""
  return wire.encode_predict_request(
      config.model_name,
      config.signature_name,
      {config.input_name: image[np.newaxis]},
  )


def _v2_input(config: load_config.LoadConfig, image: np.ndarray) -> dict:
  return {
      "name": config.input_name,
      "shape": [1, int(image.size)],
      "datatype": "FP32",
  }


def _v2_request(config: load_config.LoadConfig, tensor: dict) -> dict:
  request: dict[str, Any] = {"inputs": [tensor]}
  if config.signature_name:
    request["parameters"] = {"signature_name": config.signature_name}
  return request


def v2_rest_request(
    config: load_config.LoadConfig, image: np.ndarray
) -> tuple[bytes, dict[str, str]]:
  """A v2 REST infer body and its headers: JSON data, or binary data.

  With the binary tensor data extension the JSON header names the tensor's
  byte size and the raw little-endian floats follow it; the
  Inference-Header-Content-Length header says where the JSON ends.
  """
  tensor = _v2_input(config, image)
  if config.api != "v2_binary":
    tensor["data"] = image.tolist()
    body = json.dumps(_v2_request(config, tensor)).encode()
    return body, {"Content-Type": "application/json"}
  data = np.ascontiguousarray(image, "<f4").tobytes()
  tensor["parameters"] = {"binary_data_size": len(data)}
  header = json.dumps(_v2_request(config, tensor)).encode()
  return header + data, {
      "Content-Type": "application/octet-stream",
      "Inference-Header-Content-Length": str(len(header)),
  }


def rest_request(
    config: load_config.LoadConfig, image: np.ndarray
) -> tuple[bytes, dict[str, str]]:
  """The body and headers of one REST request of config.api."""
  if config.api == "predict":
    return rest_body(config, image), {"Content-Type": "application/json"}
  return v2_rest_request(config, image)


def v2_grpc_body(config: load_config.LoadConfig, image: np.ndarray) -> bytes:
  """A serialized ModelInferRequest: the image in raw_input_contents."""
  request = service_pb2.ModelInferRequest(model_name=config.model_name)
  tensor = request.inputs.add()
  tensor.name = config.input_name
  tensor.datatype = "FP32"
  tensor.shape.extend([1, int(image.size)])
  if config.signature_name:
    request.parameters["signature_name"].string_param = config.signature_name
  request.raw_input_contents.append(
      np.ascontiguousarray(image, "<f4").tobytes()
  )
  return request.SerializeToString()


def grpc_request_body(
    config: load_config.LoadConfig, image: np.ndarray
) -> bytes:
  """The serialized request of config.api (Predict or ModelInfer)."""
  if config.api == "predict":
    return grpc_body(config, image)
  return v2_grpc_body(config, image)


def _rest_body(config: load_config.LoadConfig, image: np.ndarray) -> bytes:
  return rest_request(config, image)[0]


def grpc_frame(message: bytes) -> bytes:
  """gRPC's length-prefixed framing of one uncompressed message."""
  return b"\x00" + len(message).to_bytes(4, "big") + message


def load_expected(
    config: load_config.LoadConfig, num_images: int
) -> np.ndarray | None:
  """The first `num_images` rows of --expected_scores, if given."""
  if not config.expected_scores:
    return None
  expected = np.load(config.expected_scores).astype(np.float32)
  if (
      expected.ndim != 2
      or expected.shape[0] < num_images
      or expected.shape[1] != config.output_size
  ):
    raise ValueError(
        f"--expected_scores has shape {expected.shape}, "
        f"want ({num_images}, {config.output_size})"
    )
  return expected[:num_images]


def build_workload(config: load_config.LoadConfig) -> Workload:
  images = load_images(config)
  encode = grpc_request_body if config.protocol == "grpc" else _rest_body
  return Workload(
      images,
      [encode(config, image) for image in images],
      load_expected(config, len(images)),
  )


class Checker:
  """Validates responses: shape always, contents under --check.

  Contents are compared with the expected scores when given, else with the
  first answer seen for the same image, which still catches answers that
  were sent to the wrong request.
  """

  def __init__(self, config: load_config.LoadConfig, workload: Workload):
    self._size = config.output_size
    self._read_output = wire.OutputReader(config.output_name)
    self._name = config.output_name
    self._check = config.check
    n = len(workload.bodies)
    if workload.expected is not None:
      self._expected = workload.expected
      self._known = np.ones(n, bool)
    else:
      self._expected = np.zeros((n, self._size), np.float32)
      self._known = np.zeros(n, bool)

  def _compare(self, index: int, scores: np.ndarray) -> ErrorKind:
    if not self._known[index]:
      self._expected[index] = scores
      self._known[index] = True
      return None
    expected = self._expected[index]
    if (
        scores.argmax() != expected.argmax()
        or np.abs(scores - expected).max() > load_config.SCORE_TOLERANCE
    ):
      return "wrong_answer"
    return None

  def scores(self, index: int, scores: np.ndarray) -> ErrorKind:
    """Checks an answer already decoded to floats (one row of scores)."""
    if scores.size != self._size:
      return "malformed"
    if not self._check:
      return None
    return self._compare(index, scores.reshape(-1))

  def grpc(self, index: int, raw: bytes) -> ErrorKind:
    """Checks a serialized PredictResponse."""
    try:
      values = self._read_output(raw)
    except (wire.WireError, IndexError):
      return "malformed"
    if len(values) != 4 * self._size:
      return "malformed"
    if not self._check:
      return None
    return self._compare(index, np.frombuffer(values, dtype="<f4"))

  def v2_grpc(self, index: int, raw: bytes) -> ErrorKind:
    """Checks a serialized ModelInferResponse (raw or typed contents)."""
    try:
      response = service_pb2.ModelInferResponse.FromString(raw)
    except message_lib.DecodeError:
      return "malformed"
    for i, tensor in enumerate(response.outputs):
      if tensor.name != self._name:
        continue
      if tensor.datatype != "FP32":
        return "malformed"
      if response.raw_output_contents:
        if i >= len(response.raw_output_contents):
          return "malformed"
        values = response.raw_output_contents[i]
        if len(values) % 4:
          return "malformed"
        return self.scores(index, np.frombuffer(values, "<f4"))
      return self.scores(
          index, np.asarray(tensor.contents.fp32_contents, np.float32)
      )
    return "malformed"

  def v2_rest(self, index: int, body: bytes) -> ErrorKind:
    """Checks a v2 REST infer answer with JSON data."""
    try:
      for tensor in _json_loads(body)["outputs"]:
        if tensor["name"] == self._name:
          return self.scores(index, np.asarray(tensor["data"], np.float32))
    except (ValueError, KeyError, TypeError):
      return "malformed"
    return "malformed"

  def rest(self, index: int, body: bytes) -> ErrorKind:
    """Checks a REST Predict body (row format)."""
    try:
      rows = _json_loads(body)["predictions"]
      row = rows[0]
      if len(rows) != 1 or len(row) != self._size:
        return "malformed"
      if not self._check:
        return None
      scores = np.asarray(row, np.float32)
    except (ValueError, KeyError, TypeError, IndexError):
      return "malformed"
    return self._compare(index, scores)


def _json_loader() -> Callable[[bytes], Any]:
  try:
    import orjson  # pylint: disable=g-import-not-at-top

    return orjson.loads
  except ImportError:
    return json.loads


_json_loads = _json_loader()
