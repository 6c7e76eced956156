r"""Sends MNIST test digits to a model server and reports the error rate.

Usage: mnist_client.py --num_tests=100 --server=localhost:8500 \
    [--concurrency=1] [--model_name=mnist] [--work_dir=/tmp]

Each test digit goes out as its own Predict request on the `predict_images`
signature (a float [1, 784] `images` tensor); the argmax of the returned
`scores` is compared with the label. Up to `--concurrency` requests are in
flight at once.

The official stubs import their TensorFlow protos through the `tensorflow`
package, which loads all of TensorFlow (a few seconds); tensors are still
encoded with numpy alone.
"""

from __future__ import annotations

import sys
import threading

from absl import app
from absl import flags
import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.example import mnist_input_data

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_tests", 100, "Number of test images.", lower_bound=1)
flags.DEFINE_string("server", "localhost:8500", "PredictionService host:port.")
flags.DEFINE_integer(
    "concurrency", 1, "Maximum number of concurrent requests.", lower_bound=1
)
flags.DEFINE_string("model_name", "mnist", "Name of the served model.")
flags.DEFINE_string(
    "work_dir", "/tmp", "Directory checked first for the MNIST .gz files."
)
flags.DEFINE_float(
    "connect_timeout",
    10.0,
    "Seconds to wait for the server to accept a connection.",
)
flags.DEFINE_float("rpc_timeout", 5.0, "Deadline of each Predict, seconds.")


class InferenceError(Exception):
  """The server could not be reached or a request failed."""


def make_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
  """Packs a float32 array as TensorProto `tensor_content` (no TF needed)."""
  array = np.ascontiguousarray(array, dtype="<f4")
  return tensor_pb2.TensorProto(
      dtype=types_pb2.DT_FLOAT,
      tensor_shape=tensor_shape_pb2.TensorShapeProto(
          dim=[
              tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape
          ]
      ),
      tensor_content=array.tobytes(),
  )


def make_request(
    model_name: str, image: np.ndarray
) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = "predict_images"
  request.inputs["images"].CopyFrom(make_tensor_proto(image.reshape(1, -1)))
  return request


def _scores(response: predict_pb2.PredictResponse) -> np.ndarray:
  """Decodes the float `scores` output, packed or in `float_val`."""
  tensor = response.outputs["scores"]
  if tensor.tensor_content:
    return np.frombuffer(tensor.tensor_content, dtype="<f4")
  return np.asarray(tensor.float_val, dtype=np.float32)


def _check(future: grpc.Future, label: int) -> tuple[bool, str | None]:
  """Returns (answered wrongly, failure message) for one finished call."""
  try:
    exception = future.exception()
    if exception is not None:
      return False, f"{exception.code().name}: {exception.details()}"
    scores = _scores(future.result())
  except grpc.FutureCancelledError:
    return False, "request cancelled"
  except ValueError as e:  # Malformed tensor_content.
    return False, f"bad scores tensor: {e}"
  if scores.size != mnist_input_data.NUM_CLASSES:
    return False, f"expected 10 scores, got {scores.size}"
  return int(np.argmax(scores)) != label, None


class _Tally:
  """Counts answers from gRPC callback threads; caps requests in flight."""

  def __init__(self, num_tests: int, concurrency: int):
    self._num_tests = num_tests
    self._slots = threading.Semaphore(concurrency)
    self._lock = threading.Lock()
    self._finished = threading.Event()
    self._done = 0
    self.errors = 0
    self.failure: str | None = None

  def acquire(self) -> None:
    self._slots.acquire()

  def record(self, future: grpc.Future, label: int) -> None:
    wrong, failure = _check(future, label)
    with self._lock:
      self.errors += int(wrong)
      self.failure = self.failure or failure
      self._done += 1
      if self._done == self._num_tests:
        self._finished.set()
    sys.stdout.write(".")
    sys.stdout.flush()
    self._slots.release()

  def wait(self) -> None:
    self._finished.wait()


def do_inference(
    server: str,
    work_dir: str,
    concurrency: int,
    num_tests: int,
    model_name: str = "mnist",
    connect_timeout: float = 10.0,
    rpc_timeout: float = 5.0,
) -> float:
  """Runs num_tests Predict calls; returns the fraction answered wrongly.

  Raises:
    InferenceError: the server is unreachable or any request failed.
  """
  test = mnist_input_data.read_data_sets(work_dir).test
  with grpc.insecure_channel(server) as channel:
    try:
      grpc.channel_ready_future(channel).result(timeout=connect_timeout)
    except grpc.FutureTimeoutError:
      raise InferenceError(
          f"Could not reach server at {server} within " f"{connect_timeout:g} s"
      ) from None
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    tally = _Tally(num_tests, concurrency)
    for i in range(num_tests):
      tally.acquire()
      if tally.failure is not None:
        break  # Stop sending; wait for what is already in flight.
      image = test.images[i % test.num_examples]
      label = int(test.labels[i % test.num_examples])
      future = stub.Predict.future(
          make_request(model_name, image), timeout=rpc_timeout
      )
      future.add_done_callback(lambda f, label=label: tally.record(f, label))
    else:
      tally.wait()
    if tally.failure is None:
      return tally.errors / num_tests
    # Let the requests still in flight finish before the channel closes.
    for _ in range(concurrency - 1):
      tally.acquire()
    raise InferenceError(f"Predict failed on {server}: {tally.failure}")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    error_rate = do_inference(
        FLAGS.server,
        FLAGS.work_dir,
        FLAGS.concurrency,
        FLAGS.num_tests,
        FLAGS.model_name,
        FLAGS.connect_timeout,
        FLAGS.rpc_timeout,
    )
  except (InferenceError, FileNotFoundError, ValueError) as e:
    sys.exit(f"\n{e}")
  print("\nInference error rate: %s%%" % (error_rate * 100))


if __name__ == "__main__":
  app.run(main)
