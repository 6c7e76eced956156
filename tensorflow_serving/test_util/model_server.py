"""Runs the real tensorflow_model_server binary as a subprocess for tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
import os
import signal
import subprocess
import time

import grpc

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.test_util import binaries


class ModelServer:
  """A started server: ports, log file, and helpers to query or stop it."""

  def __init__(
      self,
      proc: subprocess.Popen,
      grpc_port: int,
      rest_port: int,
      log_path: str,
  ):
    self.proc = proc
    self.grpc_port = grpc_port
    self.rest_port = rest_port
    self.log_path = log_path
    self.grpc_address = f"localhost:{grpc_port}"
    self.rest_url = f"http://localhost:{rest_port}" if rest_port else ""

  def log(self) -> str:
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def channel(self) -> grpc.Channel:
    return grpc.insecure_channel(self.grpc_address)

  def model_status(
      self, name: str
  ) -> get_model_status_pb2.GetModelStatusResponse:
    with self.channel() as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = name
      return stub.GetModelStatus(request, timeout=10)

  def wait_until_serving(self, timeout_s: float = 120.0) -> None:
    """Blocks until the gRPC port accepts connections (models are loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        raise RuntimeError(
            f"server exited with {self.proc.returncode}:\n{self.log()}"
        )
      with self.channel() as channel:
        try:
          grpc.channel_ready_future(channel).result(timeout=0.5)
          return
        except grpc.FutureTimeoutError:
          pass
    raise TimeoutError(f"server not serving after {timeout_s}s:\n{self.log()}")

  def stop(self, timeout_s: float = 60.0) -> int:
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(timeout_s)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    return self.proc.returncode


def server_command(args: Sequence[str]) -> list[str]:
  return binaries.binary_command(
      "tensorflow_serving/model_servers",
      "tensorflow_model_server",
      "tensorflow_serving.model_servers.main",
  ) + list(args)


def start_server(
    args: Sequence[str], rest: bool = True, log_dir: str | None = None
) -> ModelServer:
  """Starts the binary with `args` plus free --port/--rest_api_port."""
  grpc_port = binaries.pick_unused_port()
  rest_port = binaries.pick_unused_port() if rest else 0
  log_dir = log_dir or binaries.test_tmpdir()
  log_path = os.path.join(log_dir, f"model_server_{grpc_port}.log")
  argv = server_command(
      [f"--port={grpc_port}", f"--rest_api_port={rest_port}", *args]
  )
  log_file = open(log_path, "wb")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(
      argv,
      stdout=log_file,
      stderr=subprocess.STDOUT,
      env=binaries.subprocess_env(),
  )
  log_file.close()
  return ModelServer(proc, grpc_port, rest_port, log_path)


@contextlib.contextmanager
def running_server(
    args: Sequence[str], rest: bool = True, timeout_s: float = 120.0
) -> Iterator[ModelServer]:
  server = start_server(args, rest=rest)
  try:
    server.wait_until_serving(timeout_s)
    yield server
  finally:
    server.stop()
