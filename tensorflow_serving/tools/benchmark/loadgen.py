"""The closed-loop load generator behind load_test: clients, windows, stats.

Each worker process keeps `concurrency / processes` requests outstanding on
one event loop (uvloop when installed): a stream sends, awaits the answer,
checks it, and sends the next image. The client must not compete with the
server it measures for the same few cores, so everything possible happens
before the clock starts (each image's request is serialized once) and the
default clients are lean: gRPC over raw HTTP/2 frames (grpc_h2; grpc.aio
costs ~3x more CPU per call, and is still offered), REST over a minimal
keep-alive HTTP/1.1 client with the C `httptools` parser (aiohttp's costs
~3x more; `wrk` is offered too). Only requests sent and answered inside the
measurement window count.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import resource
import shutil
import subprocess
import tempfile
import time
from typing import Any

import numpy as np

from tensorflow_serving.example import mnist_input_data
from tensorflow_serving.tools.benchmark import grpc_h2
from tensorflow_serving.tools.benchmark import http1
from tensorflow_serving.tools.benchmark import wire
from tensorflow_serving.util.net.grpc_h2 import frames

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
PROTOCOLS = ("grpc", "rest")
REST_CLIENTS = ("raw", "aiohttp", "wrk")
GRPC_CLIENTS = ("raw", "aio")
EVENT_LOOPS = ("auto", "asyncio", "uvloop")
# Largest accepted difference between a response's scores and the expected
# ones under --check; batched and single-row kernels differ by ~1e-7.
SCORE_TOLERANCE = 1e-4
# After the window closes, how long in-flight requests get to finish.
_DRAIN_S = 5.0

ErrorKind = str | None


@dataclasses.dataclass(frozen=True)
class Config:
  """One load test; see load_test.py's flags for the meaning of each field."""

  server: str
  protocol: str = "grpc"
  concurrency: int = 1
  duration_s: float = 10.0
  warmup_s: float = 2.0
  model_name: str = "mnist"
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
  rest_client: str = "raw"
  grpc_client: str = "raw"
  grpc_channels: int = 1
  event_loop: str = "auto"
  timeout_s: float = 30.0

  def validate(self) -> None:
    if self.protocol not in PROTOCOLS:
      raise ValueError(f"--protocol must be one of {PROTOCOLS}")
    if self.rest_client not in REST_CLIENTS:
      raise ValueError(f"--rest_client must be one of {REST_CLIENTS}")
    if self.grpc_client not in GRPC_CLIENTS:
      raise ValueError(f"--grpc_client must be one of {GRPC_CLIENTS}")
    if self.event_loop not in EVENT_LOOPS:
      raise ValueError(f"--event_loop must be one of {EVENT_LOOPS}")
    if self.concurrency < 1 or self.processes < 1:
      raise ValueError("--concurrency and --processes must be at least 1")
    if self.processes > self.concurrency:
      raise ValueError("--processes cannot exceed --concurrency")
    if self.duration_s <= 0 and self.max_requests <= 0:
      raise ValueError("give a positive --duration or --max_requests")
    if self.uses_wrk and (self.check or self.max_requests):
      raise ValueError(
          "--rest_client=wrk cannot --check responses or stop "
          "at --max_requests; use --rest_client=raw"
      )

  @property
  def uses_wrk(self) -> bool:
    return self.protocol == "rest" and self.rest_client == "wrk"

  @property
  def rest_path(self) -> str:
    return f"/v1/models/{self.model_name}:predict"

  def streams_of(self, worker: int) -> int:
    """How many of the concurrent streams worker `worker` drives."""
    return self.concurrency // self.processes + (
        1 if worker < self.concurrency % self.processes else 0
    )


# --------------------------------------------------------------------------
# Statistics.


def percentile(sorted_values: Sequence[float], q: float) -> float:
  """Nearest-rank percentile: the smallest value with q% of them at or below.

  Always an observed value, so p100 is the maximum and a single sample is
  every percentile. `sorted_values` must be ascending and non-empty.
  """
  if not sorted_values:
    raise ValueError("percentile of no values")
  if not 0 <= q <= 100:
    raise ValueError(f"percentile {q} is not in [0, 100]")
  rank = max(1, math.ceil(q / 100 * len(sorted_values)))
  return sorted_values[rank - 1]


@dataclasses.dataclass
class WorkerResult:
  """What one worker saw inside its measurement window."""

  latencies_s: list[float]
  errors: dict[str, int]
  elapsed_s: float
  cpu_s: float
  server_cpu_s: float | None = None
  # The server's busiest threads: (name, CPU seconds), busiest first.
  server_threads: list[tuple[str, float]] | None = None
  # Host-wide CPU split over the window (see host_cpu_split).
  host: dict[str, float] | None = None

  @property
  def ok(self) -> int:
    return len(self.latencies_s)


def aggregate(results: Sequence[WorkerResult]) -> dict[str, Any]:
  """Merges concurrent workers' windows into one set of numbers.

  The windows overlap (workers start together), so the throughputs add up;
  latency percentiles are over the union of all successful requests.
  """
  latencies = sorted(
      itertools.chain.from_iterable(r.latencies_s for r in results)
  )
  errors: collections.Counter[str] = collections.Counter()
  for r in results:
    errors.update(r.errors)
  ok = len(latencies)
  elapsed = max((r.elapsed_s for r in results), default=0.0)
  throughput = sum(r.ok / r.elapsed_s for r in results if r.elapsed_s > 0)
  cpu_s = sum(r.cpu_s for r in results)
  server_cpu = [r.server_cpu_s for r in results if r.server_cpu_s is not None]
  summary: dict[str, Any] = {
      "requests": ok + sum(errors.values()),
      "ok": ok,
      "errors": sum(errors.values()),
      "errors_by_status": dict(sorted(errors.items())),
      "elapsed_s": elapsed,
      "throughput_rps": throughput,
      "latency_ms": None,
      "loadgen_cpu_s": cpu_s,
      "loadgen_cpu_pct": 100 * cpu_s / elapsed if elapsed else None,
      "loadgen_cpu_us_per_request": (
          1e6 * cpu_s / (ok + sum(errors.values()))
          if ok + sum(errors.values())
          else None
      ),
      "server_cpu_pct": (
          100 * server_cpu[0] / elapsed if server_cpu and elapsed else None
      ),
      "server_threads": None,
      "host_cpu": next((r.host for r in results if r.host), None),
  }
  for r in results:
    if r.server_threads is not None and r.elapsed_s > 0:
      summary["server_threads"] = [
          {"name": name, "cpu_pct": 100 * cpu / r.elapsed_s}
          for name, cpu in r.server_threads
      ]
      break
  if latencies:
    summary["latency_ms"] = {
        "mean": 1e3 * sum(latencies) / ok,
        "min": 1e3 * latencies[0],
        "p50": 1e3 * percentile(latencies, 50),
        "p90": 1e3 * percentile(latencies, 90),
        "p99": 1e3 * percentile(latencies, 99),
        "max": 1e3 * latencies[-1],
    }
  return summary


def self_cpu_s() -> float:
  """User + system CPU of this process, all threads included."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
  """User + system CPU of this process's waited-for children."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def process_tree_cpu_s(pid: int) -> float | None:
  """CPU seconds of `pid` and its live descendants, from /proc; None if gone.

  Descendants count because a launcher may run the real server as a child.
  """
  ticks = os.sysconf("SC_CLK_TCK")
  total = 0
  seen = set()
  todo = [pid]
  while todo:
    current = todo.pop()
    if current in seen:
      continue
    seen.add(current)
    try:
      with open(f"/proc/{current}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
      # Fields 14 and 15 of proc(5), counted from `state` (field 3).
      total += int(fields[11]) + int(fields[12])
      for task in os.listdir(f"/proc/{current}/task"):
        with open(f"/proc/{current}/task/{task}/children", "rb") as f:
          todo.extend(int(child) for child in f.read().split())
    except (OSError, IndexError, ValueError):
      if current == pid:
        return None
  return total / ticks


def thread_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
  """{tid: (thread name, CPU seconds)} for the threads of `pid`."""
  ticks = os.sysconf("SC_CLK_TCK")
  out = {}
  try:
    tids = os.listdir(f"/proc/{pid}/task")
  except OSError:
    return out
  for tid in tids:
    try:
      with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        raw = f.read()
    except OSError:
      continue
    name = raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode(errors="replace")
    fields = raw.rsplit(b")", 1)[1].split()
    out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
  return out


def host_cpu_ticks() -> list[int] | None:
  """The aggregate `cpu` line of /proc/stat (user, nice, system, idle, ...)."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      return [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None


def host_cpu_split(
    before: Sequence[int], after: Sequence[int]
) -> dict[str, float]:
  """Busy, idle and steal between two samples, in % of one core.

  Steal is time the hypervisor gave this VM's CPUs to someone else: when it
  is high, every absolute number of the run is depressed and noisy.
  """
  delta = [b - a for a, b in zip(before, after)]
  total = sum(delta[:8]) or 1
  idle = delta[3] + delta[4]  # idle + iowait
  steal = delta[7] if len(delta) > 7 else 0
  scale = 100 * (os.cpu_count() or 1) / total
  return {
      "busy_pct": scale * (total - idle - steal),
      "idle_pct": scale * idle,
      "steal_pct": scale * steal,
  }


class ResourceProbe:
  """CPU used between start() and stop(): ours, the server's, the host's."""

  def __init__(
      self,
      server_pid: int = 0,
      host: bool = True,
      own: Callable[[], float] = self_cpu_s,
  ):
    self._pid = server_pid
    self._host = host
    self._own = own
    self._own0 = 0.0
    self._server0: float | None = None
    self._threads0: dict[int, tuple[str, float]] = {}
    self._host0: list[int] | None = None

  def start(self) -> None:
    self._own0 = self._own()
    if self._pid:
      self._server0 = process_tree_cpu_s(self._pid)
      self._threads0 = thread_cpu_s(self._pid)
    if self._host:
      self._host0 = host_cpu_ticks()

  def stop(
      self,
  ) -> tuple[
      float,
      float | None,
      list[tuple[str, float]] | None,
      dict[str, float] | None,
  ]:
    """(own CPU s, server CPU s, server's top threads, host split)."""
    own = self._own() - self._own0
    server = threads = host = None
    if self._pid and self._server0 is not None:
      now = process_tree_cpu_s(self._pid)
      server = None if now is None else now - self._server0
      busy = []
      for tid, (name, cpu) in thread_cpu_s(self._pid).items():
        busy.append((cpu - self._threads0.get(tid, (name, 0.0))[1], name))
      threads = [(name, cpu) for cpu, name in sorted(busy, reverse=True)[:3]]
    if self._host0 is not None:
      now_ticks = host_cpu_ticks()
      if now_ticks is not None:
        host = host_cpu_split(self._host0, now_ticks)
    return own, server, threads, host


# --------------------------------------------------------------------------
# What to send, and how to check what comes back.


@dataclasses.dataclass(frozen=True)
class Workload:
  """Pre-serialized request bodies, one per image, and expected scores."""

  bodies: list[bytes]
  expected: np.ndarray | None


def load_images(config: Config) -> np.ndarray:
  """MNIST test images (float32 [n, 784]), read as the tutorial reads them."""
  images = mnist_input_data.read_data_sets(config.mnist_dir).test.images
  if config.num_images:
    images = images[: config.num_images]
  if not len(images):
    raise ValueError("no MNIST test images to send")
  return images


def rest_body(config: Config, image: np.ndarray) -> bytes:
  """The JSON a typical client posts: row format, one instance."""
  return json.dumps(
      {
          "signature_name": config.signature_name,
          "instances": [image.tolist()],
      }
  ).encode()


def build_workload(config: Config) -> Workload:
  images = load_images(config)
  if config.protocol == "grpc":
    bodies = [
        wire.encode_predict_request(
            config.model_name,
            config.signature_name,
            {config.input_name: image[np.newaxis]},
        )
        for image in images
    ]
  else:
    bodies = [rest_body(config, image) for image in images]
  expected = None
  if config.expected_scores:
    expected = np.load(config.expected_scores).astype(np.float32)
    if expected.shape != (len(images), config.output_size):
      if (
          expected.ndim == 2
          and expected.shape[0] >= len(images)
          and expected.shape[1] == config.output_size
      ):
        expected = expected[: len(images)]
      else:
        raise ValueError(
            f"--expected_scores has shape {expected.shape}, "
            f"want ({len(images)}, {config.output_size})"
        )
  return Workload(bodies, expected)


class Checker:
  """Validates responses: shape always, contents under --check.

  Contents are compared with the expected scores when given, else with the
  first answer seen for the same image, which still catches answers that
  were sent to the wrong request.
  """

  def __init__(self, config: Config, workload: Workload):
    self._size = config.output_size
    self._read_output = wire.OutputReader(config.output_name)
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
        or np.abs(scores - expected).max() > SCORE_TOLERANCE
    ):
      return "wrong_answer"
    return None

  def grpc(self, index: int, raw: bytes) -> ErrorKind:
    try:
      values = self._read_output(raw)
    except (wire.WireError, IndexError):
      return "malformed"
    if len(values) != 4 * self._size:
      return "malformed"
    if not self._check:
      return None
    return self._compare(index, np.frombuffer(values, dtype="<f4"))

  def rest(self, index: int, body: bytes) -> ErrorKind:
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


# --------------------------------------------------------------------------
# The measurement window and the closed loop.


class Window:
  """A worker's warmup-then-measure clock and what completed inside it."""

  def __init__(
      self,
      duration_s: float,
      max_requests: int,
      server_pid: int,
      sample_host: bool = True,
  ):
    self._duration_s = duration_s
    self._max_requests = max_requests
    self._probe = ResourceProbe(server_pid, host=sample_host)
    self._usage: tuple[Any, ...] = (0.0, None, None, None)
    self.start: float | None = None
    self.end: float | None = None
    self.stopping = False
    self.closed = asyncio.Event()
    self.latencies: list[float] = []
    self.errors: collections.Counter[str] = collections.Counter()
    self._count = 0

  def open(self) -> None:
    """Starts measuring (end of warmup)."""
    self._probe.start()
    self.start = time.perf_counter()
    if self._duration_s > 0:
      asyncio.get_running_loop().call_later(self._duration_s, self.close)

  def close(self) -> None:
    if self.end is not None:
      return
    self.end = time.perf_counter()
    self._usage = self._probe.stop()
    self.stopping = True
    self.closed.set()

  def record(self, t0: float, t1: float, error: ErrorKind) -> None:
    if self.start is None or t0 < self.start or self.end is not None:
      return
    if error is None:
      self.latencies.append(t1 - t0)
    else:
      self.errors[error] += 1
    self._count += 1
    if self._max_requests and self._count >= self._max_requests:
      self.close()

  def result(self) -> WorkerResult:
    cpu, server_cpu, threads, host = self._usage
    return WorkerResult(
        latencies_s=self.latencies,
        errors=dict(self.errors),
        elapsed_s=(self.end or time.perf_counter()) - (self.start or 0.0),
        cpu_s=cpu,
        server_cpu_s=server_cpu,
        server_threads=threads,
        host=host,
    )


Send = Callable[[int], Awaitable[ErrorKind]]


async def drive(
    senders: Sequence[Send],
    window: Window,
    warmup_s: float,
    num_bodies: int,
    offset: int = 0,
    stride: int = 1,
) -> None:
  """Runs one closed-loop stream per sender until the window closes.

  Streams take images round-robin from a shared counter, so concurrent
  requests carry different images; `offset`/`stride` interleave workers.
  """
  counter = itertools.count()
  perf_counter = time.perf_counter

  async def stream(send: Send) -> None:
    while not window.stopping:
      index = (offset + stride * next(counter)) % num_bodies
      t0 = perf_counter()
      error = await send(index)
      window.record(t0, perf_counter(), error)

  loop = asyncio.get_running_loop()
  if warmup_s > 0:
    loop.call_later(warmup_s, window.open)
  else:
    window.open()
  tasks = [asyncio.create_task(stream(send)) for send in senders]
  closed = asyncio.create_task(window.closed.wait())
  # A stream only ends early on a bug; surface it instead of idling.
  await asyncio.wait([closed, *tasks], return_when=asyncio.FIRST_COMPLETED)
  for task in tasks:
    if task.done() and task.exception() is not None:
      closed.cancel()
      for other in tasks:
        other.cancel()
      raise task.exception()
  _, pending = await asyncio.wait(tasks, timeout=_DRAIN_S)
  for task in pending:
    task.cancel()
  await asyncio.gather(*pending, return_exceptions=True)


# --------------------------------------------------------------------------
# Clients.


async def _run_grpc_raw(
    config: Config,
    workload: Workload,
    window: Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  host, port = _split_host_port(config.server)
  checker = Checker(config, workload)
  messages = [frames.grpc_message(body) for body in workload.bodies]
  channels = [
      grpc_h2.GrpcChannel(host, port, PREDICT_METHOD, config.timeout_s)
      for _ in range(max(1, min(config.grpc_channels, streams)))
  ]

  def sender(channel: grpc_h2.GrpcChannel) -> Send:
    async def send(index: int) -> ErrorKind:
      try:
        raw = await channel.unary(messages[index])
      except grpc_h2.GrpcError as exc:
        return exc.status
      except OSError as exc:
        return type(exc).__name__
      return checker.grpc(index, raw)

    return send

  try:
    for channel in channels:
      await asyncio.wait_for(channel.connect(), config.timeout_s)
    await drive(
        [sender(channels[k % len(channels)]) for k in range(streams)],
        window,
        config.warmup_s,
        len(messages),
        offset,
        stride,
    )
  finally:
    for channel in channels:
      channel.close()


async def _run_grpc_aio(
    config: Config,
    workload: Workload,
    window: Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  # Only this client needs grpc (and the threads it starts) in the generator.
  import grpc  # pylint: disable=g-import-not-at-top

  checker = Checker(config, workload)
  bodies = workload.bodies
  timeout = config.timeout_s
  channels = [
      # A private subchannel pool gives each channel its own connection.
      grpc.aio.insecure_channel(
          config.server,
          options=[
              ("grpc.use_local_subchannel_pool", 1),
              ("grpc.max_receive_message_length", -1),
          ],
      )
      for _ in range(max(1, min(config.grpc_channels, streams)))
  ]
  try:
    for channel in channels:
      await asyncio.wait_for(channel.channel_ready(), config.timeout_s)
    # No serializers: the call takes and returns bytes.
    calls = [channel.unary_unary(PREDICT_METHOD) for channel in channels]

    def sender(call) -> Send:
      async def send(index: int) -> ErrorKind:
        try:
          raw = await call(bodies[index], timeout=timeout)
        except grpc.aio.AioRpcError as exc:
          return exc.code().name
        return checker.grpc(index, raw)

      return send

    await drive(
        [sender(calls[k % len(calls)]) for k in range(streams)],
        window,
        config.warmup_s,
        len(bodies),
        offset,
        stride,
    )
  finally:
    for channel in channels:
      await channel.close()


def _split_host_port(server: str) -> tuple[str, int]:
  host, _, port = server.rpartition(":")
  if not host or not port.isdigit():
    raise ValueError(f"--server must be host:port, got {server!r}")
  return host.strip("[]"), int(port)


async def _run_rest_raw(
    config: Config,
    workload: Workload,
    window: Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  host, port = _split_host_port(config.server)
  checker = Checker(config, workload)
  head = (
      f"POST {config.rest_path} HTTP/1.1\r\nHost: {config.server}\r\n"
      "Content-Type: application/json\r\nContent-Length: "
  )
  payloads = [
      f"{head}{len(body)}\r\n\r\n".encode() + body for body in workload.bodies
  ]
  connections = [
      http1.HttpConnection(host, port, config.timeout_s) for _ in range(streams)
  ]
  for connection in connections:
    await connection.connect()

  def sender(connection: http1.HttpConnection) -> Send:
    async def send(index: int) -> ErrorKind:
      try:
        status, body = await connection.request(payloads[index])
      except (OSError, TimeoutError) as exc:
        return type(exc).__name__
      except Exception as exc:  # pylint: disable=broad-except
        return type(exc).__name__  # httptools parse errors
      if status != 200:
        return f"HTTP {status}"
      return checker.rest(index, body)

    return send

  try:
    await drive(
        [sender(c) for c in connections],
        window,
        config.warmup_s,
        len(payloads),
        offset,
        stride,
    )
  finally:
    for connection in connections:
      connection.close()


async def _run_rest_aiohttp(
    config: Config,
    workload: Workload,
    window: Window,
    streams: int,
    offset: int,
    stride: int,
) -> None:
  import aiohttp  # pylint: disable=g-import-not-at-top

  checker = Checker(config, workload)
  url = f"http://{config.server}{config.rest_path}"
  headers = {"Content-Type": "application/json"}
  bodies = workload.bodies
  connector = aiohttp.TCPConnector(limit=streams, force_close=False)
  async with aiohttp.ClientSession(
      connector=connector, timeout=aiohttp.ClientTimeout(total=config.timeout_s)
  ) as session:

    async def send(index: int) -> ErrorKind:
      try:
        async with session.post(
            url, data=bodies[index], headers=headers
        ) as response:
          body = await response.read()
          status = response.status
      except (TimeoutError, aiohttp.ClientError) as exc:
        return type(exc).__name__
      if status != 200:
        return f"HTTP {status}"
      return checker.rest(index, body)

    await drive(
        [send] * streams, window, config.warmup_s, len(bodies), offset, stride
    )


def _new_event_loop(config: Config) -> asyncio.AbstractEventLoop:
  """uvloop where asked, and by default unless grpc.aio runs on the loop."""
  want = config.event_loop
  if want == "auto":
    aio = config.protocol == "grpc" and config.grpc_client == "aio"
    want = "asyncio" if aio else "uvloop"
  if want == "uvloop":
    try:
      import uvloop  # pylint: disable=g-import-not-at-top

      return uvloop.new_event_loop()
    except ImportError:
      if config.event_loop == "uvloop":
        raise
  return asyncio.new_event_loop()


def run_worker(
    config: Config, worker: int = 0, barrier: Any | None = None
) -> WorkerResult:
  """One worker's share of the streams, on its own event loop."""
  workload = build_workload(config)
  window = Window(
      config.duration_s,
      _share(config.max_requests, config.processes, worker),
      config.server_pid if worker == 0 else 0,
      sample_host=worker == 0,
  )
  streams = config.streams_of(worker)
  if config.protocol == "grpc":
    run = _run_grpc_raw if config.grpc_client == "raw" else _run_grpc_aio
  else:
    run = (
        _run_rest_aiohttp if config.rest_client == "aiohttp" else _run_rest_raw
    )

  async def main() -> None:
    if barrier is not None:
      await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 60)
    await run(config, workload, window, streams, worker, config.processes)

  loop = _new_event_loop(config)
  try:
    loop.run_until_complete(main())
  finally:
    loop.close()
  return window.result()


def _share(total: int, parts: int, index: int) -> int:
  if not total:
    return 0
  return total // parts + (1 if index < total % parts else 0)


def _worker_process(
    config: Config, worker: int, barrier: Any, results: Any
) -> None:
  try:
    results.put((worker, run_worker(config, worker, barrier)))
  except BaseException as exc:  # pylint: disable=broad-except
    barrier.abort()
    results.put((worker, f"{type(exc).__name__}: {exc}"))


def run_processes(config: Config) -> list[WorkerResult]:
  """Runs the workers: in this process when there is one, else spawned."""
  if config.processes == 1:
    return [run_worker(config)]
  context = multiprocessing.get_context("spawn")
  barrier = context.Barrier(config.processes)
  results = context.Queue()
  procs = [
      context.Process(
          target=_worker_process,
          args=(config, worker, barrier, results),
          daemon=True,
      )
      for worker in range(config.processes)
  ]
  for proc in procs:
    proc.start()
  collected: dict[int, WorkerResult] = {}
  failures = []
  deadline = (
      time.monotonic() + 120 + config.warmup_s + config.duration_s + _DRAIN_S
  )
  try:
    while len(collected) + len(failures) < len(procs):
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        raise TimeoutError("load-generator workers did not finish in time")
      try:
        worker, result = results.get(timeout=min(remaining, 1.0))
      except Exception:  # pylint: disable=broad-except
        if not any(p.is_alive() for p in procs):
          raise RuntimeError(
              "load-generator workers died without a result"
          ) from None
        continue
      if isinstance(result, str):
        failures.append(f"worker {worker}: {result}")
      else:
        collected[worker] = result
  finally:
    for proc in procs:
      proc.join(timeout=5)
      if proc.is_alive():
        proc.kill()
        proc.join()
  if failures:
    raise RuntimeError("; ".join(failures))
  return [collected[w] for w in sorted(collected)]


# --------------------------------------------------------------------------
# wrk (REST only): a C client, for checking how much the Python one costs.

_WRK_SCRIPT = r"""
local bodies_path, path = ...
local requests, n, index, malformed = {}, 0, 0, 0
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(bodies_path) do
    n = n + 1
    requests[n] = wrk.format("POST", path,
                             {["Content-Type"] = "application/json"}, line)
  end
  index = id
end

function request()
  index = index % n + 1
  return requests[index]
end

function response(status, headers, body)
  if status == 200 then
    local _, commas = string.gsub(body, ",", "")
    if commas ~= OUTPUT_SIZE - 1 or
        not string.find(body, '"predictions"', 1, true) then
      malformed = malformed + 1
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("malformed") or 0)
  end
  local e = summary.errors
  io.write(string.format(
      "WRK_JSON {\"requests\": %d, \"duration_us\": %d, \"connect\": %d, " ..
      "\"read\": %d, \"write\": %d, \"status\": %d, \"timeout\": %d, " ..
      "\"malformed\": %d, \"mean\": %f, \"min\": %d, \"p50\": %d, " ..
      "\"p90\": %d, \"p99\": %d, \"max\": %d}\n",
      summary.requests, summary.duration, e.connect, e.read, e.write,
      e.status, e.timeout, bad, latency.mean, latency.min,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
"""


def run_wrk(config: Config) -> dict[str, Any]:
  """Warms up, then measures, with one wrk run each; returns the summary."""
  wrk = shutil.which("wrk")
  if not wrk:
    raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
  images = load_images(config)
  with tempfile.TemporaryDirectory(prefix="load_test_wrk_") as tmp:
    bodies = os.path.join(tmp, "bodies.jsonl")
    with open(bodies, "wb") as f:
      for image in images:
        f.write(rest_body(config, image) + b"\n")
    script = os.path.join(tmp, "predict.lua")
    with open(script, "w", encoding="utf-8") as f:
      # wrk passes no arguments to the chunk: bind them as upvalues here.
      f.write(
          f"OUTPUT_SIZE = {config.output_size}\n"
          + _WRK_SCRIPT.replace(
              "local bodies_path, path = ...",
              f"local bodies_path, path = "
              f"{json.dumps(bodies)}, "
              f"{json.dumps(config.rest_path)}",
          )
      )

    def wrk_run(seconds: float) -> dict[str, Any]:
      argv = [
          wrk,
          f"-t{config.processes}",
          f"-c{config.concurrency}",
          f"-d{max(1, round(seconds))}s",
          f"--timeout={max(1, round(config.timeout_s))}s",
          "-s",
          script,
          f"http://{config.server}{config.rest_path}",
      ]
      out = subprocess.run(
          argv,
          check=True,
          capture_output=True,
          text=True,
          timeout=seconds + config.timeout_s + 30,
      )
      for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
          return json.loads(line[len("WRK_JSON ") :])
      raise RuntimeError(f"wrk printed no summary:\n{out.stdout}{out.stderr}")

    if config.warmup_s > 0:
      wrk_run(config.warmup_s)
    probe = ResourceProbe(config.server_pid, own=children_cpu_s)
    probe.start()
    stats = wrk_run(config.duration_s)
    cpu, server_cpu, threads, host = probe.stop()
  elapsed = stats["duration_us"] / 1e6
  errors = {
      kind: stats[kind]
      for kind in ("connect", "read", "write", "timeout", "malformed")
      if stats[kind]
  }
  if stats["status"]:
    errors["HTTP non-2xx"] = stats["status"]
  ok = max(0, stats["requests"] - stats["status"] - stats["malformed"])
  total = ok + sum(errors.values())
  return {
      "requests": total,
      "ok": ok,
      "errors": sum(errors.values()),
      "errors_by_status": errors,
      "elapsed_s": elapsed,
      "throughput_rps": ok / elapsed if elapsed else 0.0,
      # wrk's histogram covers every response, including the few bad ones.
      "latency_ms": (
          {
              "mean": stats["mean"] / 1e3,
              "min": stats["min"] / 1e3,
              "p50": stats["p50"] / 1e3,
              "p90": stats["p90"] / 1e3,
              "p99": stats["p99"] / 1e3,
              "max": stats["max"] / 1e3,
          }
          if stats["requests"]
          else None
      ),
      "loadgen_cpu_s": cpu,
      "loadgen_cpu_pct": 100 * cpu / elapsed if elapsed else None,
      "loadgen_cpu_us_per_request": 1e6 * cpu / total if total else None,
      "server_cpu_pct": (
          100 * server_cpu / elapsed
          if server_cpu is not None and elapsed
          else None
      ),
      "server_threads": (
          [
              {"name": name, "cpu_pct": 100 * thread_cpu / elapsed}
              for name, thread_cpu in threads or ()
          ]
          or None
      ),
      "host_cpu": host,
  }


def run(config: Config) -> dict[str, Any]:
  """Runs the whole test; returns the summary (see aggregate())."""
  config.validate()
  if config.uses_wrk:
    summary = run_wrk(config)
  else:
    summary = aggregate(run_processes(config))
  summary["config"] = dataclasses.asdict(config)
  summary["client"] = (
      config.rest_client if config.protocol == "rest" else config.grpc_client
  )
  return summary
