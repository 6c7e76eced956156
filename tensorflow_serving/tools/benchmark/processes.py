"""Starting, probing and stopping the benchmark's subprocesses.

Every child is started in its own session (so a Ctrl-C in the terminal
reaches only the driver, which then stops the children in order) and, where
util-linux's setpriv exists, with a parent-death signal, so that nothing
outlives a driver that is killed outright.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import grpc

from tensorflow_serving.test_util import binaries
from tensorflow_serving.tools.benchmark import load_config

# `setpriv --pdeathsig` (util-linux) asks the kernel to SIGTERM a child when
# the driver dies, then execs it. A subprocess preexec_fn could do the same
# with prctl, but running Python between fork and exec can deadlock once the
# driver has threads (gRPC starts some).
_SETPRIV = shutil.which("setpriv")


# Binary lookup, child environment and free ports are the shared mechanism
# the server tests use too.
runfiles_root = binaries.runfiles_root
binary_command = binaries.binary_command
subprocess_env = binaries.subprocess_env
pick_unused_port = binaries.pick_unused_port


class Child:
  """A started subprocess with its output in a log file."""

  def __init__(
      self,
      name: str,
      argv: Sequence[str],
      log_path: str,
      env: dict[str, str] | None = None,
  ):
    self.name = name
    self.argv = list(argv)
    self.log_path = log_path
    wrapper = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []
    with open(log_path, "wb") as log:
      log.write(f"$ {shlex.join(self.argv)}\n".encode())
      log.flush()
      # The pid stays the child's: setpriv execs it.
      self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
          wrapper + self.argv,
          stdout=log,
          stderr=subprocess.STDOUT,
          stdin=subprocess.DEVNULL,
          env=env or subprocess_env(),
          start_new_session=True,
      )

  @property
  def pid(self) -> int:
    return self.proc.pid

  def alive(self) -> bool:
    return self.proc.poll() is None

  def log_tail(self, lines: int = 30) -> str:
    try:
      with open(self.log_path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])
    except OSError:
      return ""

  def wait(self, timeout_s: float) -> int:
    """Waits for a normal exit; kills the child if it overruns."""
    try:
      return self.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
      self.stop()
      raise

  def stop(self, grace_s: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `grace_s`; the whole session group."""
    if self.proc.poll() is None:
      self._signal(signal.SIGTERM)
      try:
        self.proc.wait(grace_s)
      except subprocess.TimeoutExpired:
        self._signal(signal.SIGKILL)
        self.proc.wait()
    else:
      # The leader is gone; make sure nothing it started lingers.
      self._signal(signal.SIGKILL)
    return self.proc.returncode

  def _signal(self, sig: int) -> None:
    try:
      os.killpg(self.proc.pid, sig)
    except (ProcessLookupError, PermissionError):
      pass


def run_to_completion(
    name: str, argv: Sequence[str], log_path: str, timeout_s: float
) -> None:
  """Runs a child to the end; raises with its log tail if it fails."""
  child = Child(name, argv, log_path)
  try:
    code = child.wait(timeout_s)
  except subprocess.TimeoutExpired as exc:
    raise RuntimeError(
        f"{name} did not finish in {timeout_s:.0f}s:\n" f"{child.log_tail()}"
    ) from exc
  finally:
    child.stop()
  if code != 0:
    raise RuntimeError(f"{name} exited with {code}:\n{child.log_tail()}")


def grpc_predict_probe(
    address: str,
    body: bytes,
    timeout_s: float = 2.0,
    method: str = load_config.PREDICT_METHOD,
) -> str | None:
  """None when a call of `method` (Predict) with `body` succeeds."""
  with grpc.insecure_channel(address) as channel:
    call = channel.unary_unary(method)
    try:
      call(body, timeout=timeout_s)
    except grpc.RpcError as exc:
      code = exc.code()  # pytype: disable=attribute-error
      return f"{code.name}: {exc.details()}"  # pytype: disable=attribute-error
  return None


def rest_predict_probe(
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    key: str = "predictions",
    timeout_s: float = 2.0,
) -> str | None:
  """None when POSTing `body` to `url` answers 200 with `key` (JSON)."""
  request = urllib.request.Request(
      url, data=body, headers=headers or {"Content-Type": "application/json"}
  )
  try:
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
      if key not in json.loads(response.read()):
        return f"no {key} in the response"
  except urllib.error.HTTPError as exc:
    return f"HTTP {exc.code}: {exc.read()[:200]!r}"
  except (OSError, ValueError, TypeError) as exc:
    return f"{type(exc).__name__}: {exc}"
  return None


def wait_until(child: Child, probe, timeout_s: float) -> None:
  """Polls `probe()` (None = ready) until it passes or the child exits."""
  deadline = time.monotonic() + timeout_s
  why = "not probed yet"
  while time.monotonic() < deadline:
    if not child.alive():
      raise RuntimeError(
          f"{child.name} exited with {child.proc.returncode} "
          f"before serving:\n{child.log_tail()}"
      )
    why = probe()
    if why is None:
      return
    time.sleep(0.25)
  raise TimeoutError(
      f"{child.name} not serving after {timeout_s:.0f}s "
      f"({why}):\n{child.log_tail()}"
  )
