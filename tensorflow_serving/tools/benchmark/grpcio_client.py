"""The official grpcio client over tensorflow-serving-api's stubs, as users call it.

What a TensorFlow Serving user runs against a server: one channel (one
HTTP/2 connection), `PredictionServiceStub`, requests built with
`tf.make_tensor_proto` (as the tutorial's mnist_client does), N calls in
flight. Two ways to keep them in flight from one process:

  grpcio      `stub.Predict.future(request, timeout)` with a done callback
              that records the answer and starts the next call: the
              tutorial's own style, and the lighter one at low concurrency
              (about 200 us of client CPU per call at 1 in flight against
              270 us for grpc.aio on the 2-core reference host; the two meet
              at about 100 us at 32).
  grpcio_aio  `await stub.Predict(request, timeout)` on grpc.aio, one
              coroutine per stream.

Requests are built once per image before the clock starts; the stub still
serializes each call and parses each answer, as it would for a user.
h2load's answer checks use the same futures loop through grpcio's generic
unary call (serialized requests in, raw answers out), which needs no
TensorFlow in the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import itertools
import threading
import time
from typing import Any, NamedTuple

import grpc
import numpy as np

from tensorflow_serving.tools.benchmark import closed_loop
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import workload as workload_lib

_DT_FLOAT = 1


def build_requests(config: load_config.LoadConfig, images: np.ndarray) -> list:
  """One PredictRequest per image, as the tutorial's client builds them."""
  # Imported here: loading TensorFlow takes seconds and h2load's checks
  # (generic calls) do without it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top

  requests = []
  for image in images:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = config.model_name
    request.model_spec.signature_name = config.signature_name
    request.inputs[config.input_name].CopyFrom(
        tf.make_tensor_proto(image, shape=[1, image.size])
    )
    requests.append(request)
  return requests


class Calls(NamedTuple):
  """What the futures loop sends: one method per channel, each image's
  request, and the check of an answer to image i."""

  methods: list[Any]
  requests: Sequence[Any]
  check: Callable[[int, Any], workload_lib.ErrorKind]


def stub_calls(
    config: load_config.LoadConfig,
    work: workload_lib.Workload,
    channels: Sequence[grpc.Channel],
) -> Calls:
  """The official stubs: PredictionServiceStub(channel).Predict."""
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

  return Calls(
      [
          prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
          for channel in channels
      ],
      build_requests(config, work.images),
      ResponseChecker(config, work),
  )


def generic_calls(
    config: load_config.LoadConfig,
    work: workload_lib.Workload,
    channels: Sequence[grpc.Channel],
) -> Calls:
  """grpcio's generic unary call: serialized requests, raw answers."""
  checker = workload_lib.Checker(config, work)
  return Calls(
      [channel.unary_unary(config.grpc_method) for channel in channels],
      work.bodies,
      checker.grpc if config.api == "predict" else checker.v2_grpc,
  )


def channel_options(config: load_config.LoadConfig) -> list[tuple[str, int]]:
  # A user's channel has no options. With several, a private subchannel pool
  # gives each its own connection instead of sharing one.
  return (
      [("grpc.use_local_subchannel_pool", 1)]
      if config.grpc_channels > 1
      else []
  )


class ResponseChecker:
  """Checks parsed PredictResponses (tensor_content or float_val)."""

  def __init__(
      self, config: load_config.LoadConfig, workload: workload_lib.Workload
  ):
    self._checker = workload_lib.Checker(config, workload)
    self._name = config.output_name

  def __call__(self, index: int, response: Any) -> workload_lib.ErrorKind:
    outputs = response.outputs
    if self._name not in outputs:
      return "malformed"
    tensor = outputs[self._name]
    if tensor.dtype != _DT_FLOAT:
      return "malformed"
    if tensor.tensor_content:
      if len(tensor.tensor_content) % 4:
        return "malformed"
      values = np.frombuffer(tensor.tensor_content, "<f4")
    else:
      values = np.asarray(tensor.float_val, np.float32)
    return self._checker.scores(index, values)


def run_futures(
    config: load_config.LoadConfig,
    workload: workload_lib.Workload,
    window: closed_loop.Window,
    streams: int,
    calls: Callable[..., Calls] = stub_calls,
) -> None:
  """Keeps `streams` calls in flight with futures until the window closes.

  Answers arrive on grpcio's threads; a call's done callback records it and
  starts the next one there, so no thread waits per call.
  """
  timeout = config.timeout_s
  channels = [
      grpc.insecure_channel(config.server, options=channel_options(config))
      for _ in range(max(1, min(config.grpc_channels, streams)))
  ]
  lock = threading.Lock()
  closed = threading.Event()
  window.on_close(closed.set)
  drained = threading.Event()
  live = [streams]
  counter = itertools.count()
  perf_counter = time.perf_counter

  try:
    for channel in channels:
      try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
      except grpc.FutureTimeoutError:
        raise ConnectionRefusedError(
            f"no gRPC connection to {config.server} in {timeout:g} s"
        ) from None
    methods, requests, check = calls(config, workload, channels)
    n = len(requests)

    def launch(method) -> None:
      index = next(counter) % n
      t0 = perf_counter()
      future = method.future(requests[index], timeout=timeout)
      future.add_done_callback(lambda f: finished(method, f, index, t0))

    def finished(method, future, index: int, t0: float) -> None:
      t1 = perf_counter()
      try:
        error = check(index, future.result())
      except grpc.RpcError as exc:
        error = exc.code().name  # pytype: disable=attribute-error
      with lock:
        window.record(t0, t1, error)
        stop = window.stopping
        if stop:
          live[0] -= 1
          if not live[0]:
            drained.set()
      if not stop:
        launch(method)

    if config.warmup_s <= 0:
      window.open()
    for k in range(streams):
      launch(methods[k % len(methods)])
    if config.warmup_s > 0:
      closed.wait(config.warmup_s)
      with lock:
        if not window.stopping:
          window.open()
    if window.duration_s > 0:
      closed.wait(window.duration_s)
    else:
      closed.wait()
    with lock:
      window.close()
    drained.wait(closed_loop.DRAIN_S)
  finally:
    for channel in channels:
      channel.close()


async def run_aio(
    config: load_config.LoadConfig,
    workload: workload_lib.Workload,
    window: closed_loop.Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  """One grpc.aio coroutine per stream on the closed loop."""
  timeout = config.timeout_s
  channels = [
      grpc.aio.insecure_channel(config.server, options=channel_options(config))
      for _ in range(max(1, min(config.grpc_channels, streams)))
  ]

  def sender(predict, requests, check) -> closed_loop.Send:
    async def send(index: int) -> workload_lib.ErrorKind:
      try:
        response = await predict(requests[index], timeout=timeout)
      except grpc.aio.AioRpcError as exc:
        return exc.code().name
      return check(index, response)

    return send

  try:
    for channel in channels:
      try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
      except TimeoutError:
        raise ConnectionRefusedError(
            f"no gRPC connection to {config.server} in {timeout:g} s"
        ) from None
    methods, requests, check = stub_calls(config, workload, channels)
    await closed_loop.drive(
        [
            sender(methods[k % len(methods)], requests, check)
            for k in range(streams)
        ],
        window,
        config.warmup_s,
        len(requests),
        offset,
        stride,
    )
  finally:
    for channel in channels:
      await channel.close()
