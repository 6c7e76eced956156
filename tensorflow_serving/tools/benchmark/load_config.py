"""What one load test is: the server, the API, the client and the load.

Shared by every client and driver of the load generator, and by the
comparison that starts them, so a field means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
V2_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
PROTOCOLS = ("grpc", "rest")
# What a request carries: upstream's Predict, the Open Inference Protocol
# (v2: raw_input_contents over gRPC, JSON tensors over REST) or v2 REST with
# the binary tensor data extension (the image as 3136 bytes after the JSON).
APIS = ("predict", "v2", "v2_binary")
# The clients that speak each API other than Predict (users' C clients).
V2_CLIENTS = ("wrk", "h2load")
# The clients of each API; the first is the default. grpcio and h2load are
# the gRPC clients users measure with, wrk the REST one; raw (this
# project's light asyncio clients), grpcio_aio and aiohttp are extras.
CLIENTS = {
    "grpc": ("grpcio", "h2load", "grpcio_aio", "raw"),
    "rest": ("wrk", "raw", "aiohttp"),
}
# C load generators driven as subprocesses: they cannot stop at a request
# count, and check answers their own way (see wrk.py and h2load.py).
EXTERNAL_CLIENTS = ("wrk", "h2load")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
# Largest accepted difference between a response's scores and the expected
# ones under --check; batched and single-row kernels differ by ~1e-7.
SCORE_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class LoadConfig:
  """One load test; see load_test.py's flags for the meaning of each field."""

  server: str
  protocol: str = "grpc"
  client: str = ""  # "" is the protocol's first client
  concurrency: int = 1
  duration_s: float = 10.0
  warmup_s: float = 2.0
  api: str = "predict"
  model_name: str = "mnist"
  # v2 requests name it as the `signature_name` parameter; "" sends none
  # (servers that know one signature per model).
  signature_name: str = "predict_images"
  input_name: str = "images"
  output_name: str = "scores"
  output_size: int = 10
  processes: int = 1
  max_requests: int = 0
  check: bool = False
  expected_scores: str = ""
  server_pid: int = 0
  num_images: int = 0
  mnist_dir: str = "/tmp"
  grpc_channels: int = 1
  event_loop: str = "auto"
  timeout_s: float = 30.0

  @property
  def client_name(self) -> str:
    return self.client or CLIENTS.get(self.protocol, ("",))[0]

  @property
  def external(self) -> bool:
    return self.client_name in EXTERNAL_CLIENTS

  def validate(self) -> None:
    if self.protocol not in PROTOCOLS:
      raise ValueError(f"--protocol must be one of {PROTOCOLS}")
    if self.client_name not in CLIENTS[self.protocol]:
      raise ValueError(
          f"--client for {self.protocol} must be one of "
          f"{CLIENTS[self.protocol]}"
      )
    if self.api not in APIS:
      raise ValueError(f"--api must be one of {APIS}")
    if self.api != "predict" and self.client_name not in V2_CLIENTS:
      raise ValueError(f"--api={self.api} is sent by {V2_CLIENTS} only")
    if self.api == "v2_binary" and self.protocol != "rest":
      raise ValueError("--api=v2_binary is a REST extension")
    if self.event_loop not in EVENT_LOOPS:
      raise ValueError(f"--event_loop must be one of {EVENT_LOOPS}")
    if self.concurrency < 1 or self.processes < 1 or self.grpc_channels < 1:
      raise ValueError(
          "--concurrency, --processes and --grpc_channels must be at least 1"
      )
    if self.processes > self.concurrency:
      raise ValueError("--processes cannot exceed --concurrency")
    if self.duration_s <= 0 and self.max_requests <= 0:
      raise ValueError("give a positive --duration or --max_requests")
    if self.external and (self.max_requests or self.duration_s <= 0):
      raise ValueError(
          f"--client={self.client_name} runs for a --duration and cannot "
          "stop at --max_requests"
      )
    if self.client_name == "h2load" and self.processes != 1:
      raise ValueError(
          "--client=h2load spreads streams over --grpc_channels "
          "connections, not --processes"
      )
    if self.client_name.startswith("grpcio") and self.processes != 1:
      raise ValueError(
          "the grpcio clients run in one process (as a user's would); "
          "use --grpc_channels for more connections"
      )

  @property
  def rest_path(self) -> str:
    if self.api == "predict":
      return f"/v1/models/{self.model_name}:predict"
    return f"/v2/models/{self.model_name}/infer"

  @property
  def grpc_method(self) -> str:
    return PREDICT_METHOD if self.api == "predict" else V2_INFER_METHOD

  def streams_of(self, worker: int) -> int:
    """How many of the concurrent streams worker `worker` drives."""
    return self.concurrency // self.processes + (
        1 if worker < self.concurrency % self.processes else 0
    )
