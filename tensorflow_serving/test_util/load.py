"""Client load for the workers and fleet tests: official gRPC and http.client.

Each load runs threads that send Predict back to back until stopped and keep
what failed, with when (time.monotonic()), so a test can tell the failures a
killed process caused from any others.
"""

from __future__ import annotations

from collections.abc import Callable
import http.client
import json
import threading
import time

import grpc

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc


class _Load:
  """Threads running `self._serve(index)` until the context exits."""

  def __init__(self, threads: int):
    self._stop = threading.Event()
    self._lock = threading.Lock()
    self.ok = 0
    # Answers by the model version that gave them (where the reply says).
    self.versions: dict[int, int] = {}
    # (thread, time.monotonic() when it ended, what went wrong)
    self.failures: list[tuple[int, float, str]] = []
    self._threads = [
        threading.Thread(target=self._serve, args=(i,), daemon=True)
        for i in range(threads)
    ]

  def __enter__(self):
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self._stop.set()
    for thread in self._threads:
      thread.join(60)

  def _record(self, index: int, failure: str | None, version: int = 0) -> None:
    with self._lock:
      if failure is None:
        self.ok += 1
        self.versions[version] = self.versions.get(version, 0) + 1
      else:
        self.failures.append((index, time.monotonic(), failure))

  def _serve(self, index: int) -> None:
    raise NotImplementedError


class GrpcLoad(_Load):
  """Predict over `channels` channels, each with a connection of its own.

  (grpcio shares one connection among a process's channels to one target
  unless each has its own subchannel pool.) `check(response)` returns what
  is wrong with an answer, or None.
  """

  def __init__(
      self,
      address: str,
      request: predict_pb2.PredictRequest,
      channels: int = 4,
      check: Callable[[predict_pb2.PredictResponse], str | None] | None = None,
  ):
    super().__init__(channels)
    self._address = address
    self._request = request
    self._check = check

  def _serve(self, index: int) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(self._address, options=options) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not self._stop.is_set():
        try:
          response = stub.Predict(self._request, timeout=30)
        except grpc.RpcError as exc:
          self._record(index, f"{exc.code().name}: {exc.details()}")
          continue
        wrong = self._check(response) if self._check else None
        self._record(index, wrong, response.model_spec.version.value)


class RestLoad(_Load):
  """POSTs `body` to a :predict path over keep-alive connections."""

  def __init__(
      self,
      port: int,
      path: str,
      body: dict,
      threads: int = 1,
      check: Callable[[dict], str | None] | None = None,
  ):
    super().__init__(threads)
    self._port = port
    self._path = path
    self._body = json.dumps(body)
    self._check = check

  def _serve(self, index: int) -> None:
    connection = None
    while not self._stop.is_set():
      if connection is None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, 30)
      try:
        connection.request(
            "POST",
            self._path,
            body=self._body,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        reply = response.read()
      except (OSError, http.client.HTTPException) as exc:
        self._record(index, f"{type(exc).__name__}: {exc}")
        connection.close()
        connection = None
        continue
      if response.status != 200:
        self._record(index, f"HTTP {response.status}: {reply[:200]!r}")
        continue
      wrong = self._check(json.loads(reply)) if self._check else None
      self._record(index, wrong)
