"""Runs one attack while legit clients call and the server's RSS is sampled.

Legit traffic is a gRPC call (the official grpcio client) and a
REST call, each every 50 ms on connections of their own, 2 s deadline. A row
of the result is what the table prints: RSS growth over the attack, legit
failures, the slowest legit answer (responsiveness), and the refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import dataclasses
import http.client
import os
import signal
import subprocess
import threading
import time

import grpc

from tensorflow_serving.test_util import binaries
from tensorflow_serving.tools.robustness import attacks

_IDENTITY = lambda data: data


def rss_bytes(pid: int) -> int:
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) * 1024
  return 0


@dataclasses.dataclass
class Row:
  attack: str
  refusal: str = ""
  rss_growth: int = 0
  legit_calls: int = 0
  legit_failures: int = 0
  slowest_legit_s: float = 0.0
  seconds: float = 0.0
  failures: list[str] = dataclasses.field(default_factory=list)


class Target:
  """The target server (or any command taking --port/--rest_api_port)."""

  def __init__(self, extra_args: Sequence[str] = (), log_path: str = ""):
    self.grpc_port = binaries.pick_unused_port()
    self.rest_port = binaries.pick_unused_port()
    self.log_path = log_path or os.path.join(
        os.environ.get("TEST_TMPDIR", "/tmp"), f"target_{self.grpc_port}.log"
    )
    argv = binaries.binary_command(
        "tensorflow_serving/tools/robustness",
        "target_server",
        "tensorflow_serving.tools.robustness.target_server",
    ) + [
        f"--port={self.grpc_port}",
        f"--rest_api_port={self.rest_port}",
        *extra_args,
    ]
    self._log = open(self.log_path, "w", encoding="utf-8")
    self.proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=self._log,
        text=True,
        env=binaries.subprocess_env(),
    )
    line = self.proc.stdout.readline()
    if "serving" not in line:
      raise RuntimeError(f"target did not start: {self.log()}")

  def log(self) -> str:
    with open(self.log_path, encoding="utf-8", errors="replace") as f:
      return f.read()

  def rss(self) -> int:
    return rss_bytes(self.proc.pid)

  def alive(self) -> bool:
    return self.proc.poll() is None

  def stop(self, timeout_s: float = 15.0) -> float:
    """SIGTERM; returns the seconds it took to exit (kills past timeout)."""
    started = time.monotonic()
    if self.alive():
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(timeout_s)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self._log.close()
    return time.monotonic() - started


class Legit:
  """gRPC and REST calls every 50 ms while an attack runs."""

  def __init__(self, target: Target, period_s: float = 0.05):
    self._target = target
    self._period = period_s
    self._stop = threading.Event()
    self.calls = 0
    self.failures: list[str] = []
    self.slowest = 0.0
    self._threads = [
        threading.Thread(target=self._grpc, daemon=True),
        threading.Thread(target=self._rest, daemon=True),
    ]

  def __enter__(self) -> Legit:
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    for thread in self._threads:
      thread.join(10)

  def _record(self, started: float, error: str | None) -> None:
    self.calls += 1
    self.slowest = max(self.slowest, time.monotonic() - started)
    if error:
      self.failures.append(error)

  def _grpc(self) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{self._target.grpc_port}")
    echo = channel.unary_unary(
        attacks.ECHO,
        request_serializer=_IDENTITY,
        response_deserializer=_IDENTITY,
    )
    while not self._stop.is_set():
      started = time.monotonic()
      error = None
      try:
        if echo(b"legit", timeout=2.0) != b"legit":
          error = "grpc: wrong answer"
      except grpc.RpcError as exc:
        error = f"grpc: {exc.code().name} {exc.details()}"
      self._record(started, error)
      self._stop.wait(self._period)
    channel.close()

  def _rest(self) -> None:
    conn = None
    while not self._stop.is_set():
      started = time.monotonic()
      error = None
      try:
        if conn is None:
          conn = http.client.HTTPConnection(
              "127.0.0.1", self._target.rest_port, timeout=2.0
          )
        conn.request("POST", "/v1/echo", body=b"legit")
        reply = conn.getresponse()
        if reply.read() != b'{"size": 5}' or reply.status != 200:
          error = f"rest: {reply.status}"
      except (OSError, http.client.HTTPException) as exc:
        error = f"rest: {type(exc).__name__} {exc}"
        conn = None
      self._record(started, error)
      self._stop.wait(self._period)


def run(
    target: Target, name: str, attack: Callable[[], str], settle_s: float = 0.3
) -> Row:
  """One attack under legit load; RSS sampled every 20 ms."""
  row = Row(name)
  base = target.rss()
  peak = base
  stop = threading.Event()

  def sample():
    nonlocal peak
    while not stop.is_set():
      with contextlib.suppress(OSError):
        peak = max(peak, target.rss())
      stop.wait(0.02)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  started = time.monotonic()
  with Legit(target) as legit:
    time.sleep(settle_s)
    try:
      row.refusal = attack()
    except Exception as exc:  # pylint: disable=broad-except
      row.refusal = f"attack raised {type(exc).__name__}: {exc}"
    time.sleep(settle_s)
  stop.set()
  sampler.join()
  row.seconds = time.monotonic() - started
  row.rss_growth = max(0, peak - base)
  row.legit_calls = legit.calls
  row.legit_failures = len(legit.failures)
  row.failures = legit.failures[:5]
  row.slowest_legit_s = legit.slowest
  if not target.alive():
    row.failures.append("server died")
  return row


def markdown(rows: Sequence[Row]) -> str:
  lines = [
      "| attack | RSS growth | legit calls failed | slowest legit call |"
      " refusal |",
      "|---|---|---|---|---|",
  ]
  for row in rows:
    lines.append(
        f"| {row.attack} | {row.rss_growth / 2**20:.0f} MiB |"
        f" {row.legit_failures}/{row.legit_calls} |"
        f" {row.slowest_legit_s * 1000:.0f} ms | {row.refusal} |"
    )
  return "\n".join(lines)
