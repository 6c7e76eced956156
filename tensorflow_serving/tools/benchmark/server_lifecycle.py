"""A benchmarked server's life: its command line, start, first answer, stop.

Which servers there are is a small registry: rows.ALL_CONFIGS names each
configuration (server, protocol, API, batching); ours (on either API) starts
with `_ours`, a baseline by LAUNCHERS below, and a v2 peer from its own venv
by peer_servers. Nothing else in the comparison knows servers apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import dataclasses
import os
import subprocess
from typing import Any

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import peer_servers
from tensorflow_serving.tools.benchmark import processes
from tensorflow_serving.tools.benchmark import rows as rows_lib
from tensorflow_serving.tools.benchmark import workload

BASELINES = "tensorflow_serving/tools/benchmark/baselines"


@dataclasses.dataclass(frozen=True)
class Launch:
  """What a launcher needs to build one server's command line."""

  config: rows_lib.ServerConfig
  model: str
  grpc_port: int
  rest_port: int
  threads: int  # num_batch_threads, for a batching config
  server_binary: str  # "" for this build's
  server_args: tuple[str, ...]
  batching_parameters: str  # the file's text, for a batching config
  work_dir: str


def _ours(launch: Launch) -> list[str]:
  """This project's tensorflow_model_server (or --server_binary)."""
  argv = (
      [launch.server_binary]
      if launch.server_binary
      else processes.binary_command(
          "tensorflow_serving/model_servers",
          "tensorflow_model_server",
          "tensorflow_serving.model_servers.main",
      )
  )
  argv += [
      f"--port={launch.grpc_port}",
      f"--rest_api_port={launch.rest_port}",
      "--model_name=mnist",
      f"--model_base_path={launch.model}",
      *launch.server_args,
  ]
  if launch.config.batching:
    params = os.path.join(
        launch.work_dir, f"batching_parameters_t{launch.threads}.txt"
    )
    with open(params, "w", encoding="utf-8") as f:
      f.write(launch.batching_parameters)
    argv += ["--enable_batching", f"--batching_parameters_file={params}"]
  return argv


def _baseline(name: str) -> Callable[[Launch], list[str]]:
  """One of baselines/' servers, on the port of its config's protocol."""

  def argv(launch: Launch) -> list[str]:
    grpc = launch.config.protocol == "grpc"
    port = launch.grpc_port if grpc else launch.rest_port
    return processes.binary_command(
        BASELINES, name, BASELINES.replace("/", ".") + "." + name
    ) + [
        f"--port={port}",
        "--model_name=mnist",
        f"--model_base_path={launch.model}",
    ]

  return argv


# ServerConfig.server -> how to start it (ours: every "ours ..." server).
LAUNCHERS: dict[str, Callable[[Launch], list[str]]] = {
    "ours": _ours,
    "naive grpc.aio": _baseline("naive_grpc_server"),
    "FastAPI+uvicorn": _baseline("fastapi_server"),
}


class ServerStartError(Exception):
  """A server did not start, or did not answer in time."""


def startup_failure(lines: list[str]) -> str:
  """The most telling line of a server that would not start."""
  for line in reversed(lines):
    if "enable_batching" in line or "batching_parameters" in line:
      return "server rejected batching flags: " + line.strip()[:200]
  for line in reversed(lines):
    if any(word in line for word in ("Error", "error", "FATAL", "Traceback")):
      return line.strip()[:200]
  return lines[0][:200] if lines else "unknown failure"


def server_label(config: rows_lib.ServerConfig, threads: int) -> str:
  """The server's name in logs and file names (batching: with its threads)."""
  return config.name + (f"_t{threads}" if config.batching else "")


class Servers:
  """Starts servers for one comparison; every one is stopped by `stack`."""

  def __init__(
      self,
      options: Any,  # orchestration.Options
      work_dir: str,
      stack: contextlib.ExitStack,
      log: Callable[[str], None],
  ):
    self._o = options
    self._dir = work_dir
    self._stack = stack
    self._log = log
    self._images: Any = None

  def _path(self, name: str) -> str:
    return os.path.join(self._dir, name)

  def argv(
      self,
      config: rows_lib.ServerConfig,
      model: str,
      grpc_port: int,
      rest_port: int,
      threads: int,
  ) -> list[str]:
    launch = Launch(
        config=config,
        model=model,
        grpc_port=grpc_port,
        rest_port=rest_port,
        threads=threads,
        server_binary=self._o.server_binary,
        server_args=tuple(self._o.server_args),
        batching_parameters=self._o.batching_parameters(threads),
        work_dir=self._dir,
    )
    return (_ours if config.ours else LAUNCHERS[config.server])(launch)

  def _probe(
      self, config: rows_lib.ServerConfig, address: str
  ) -> Callable[[], str | None]:
    lconfig = load_config.LoadConfig(
        server=address,
        protocol=config.protocol,
        api=config.api,
        signature_name=config.signature_name,
        num_images=1,
        mnist_dir=self._o.mnist_dir,
    )
    if self._images is None:
      self._images = workload.load_images(lconfig)
    image = self._images[0]
    if config.protocol == "grpc":
      body = workload.grpc_request_body(lconfig, image)
      method = lconfig.grpc_method
      return lambda: processes.grpc_predict_probe(address, body, method=method)
    body, headers = workload.rest_request(lconfig, image)
    url = f"http://{address}{lconfig.rest_path}"
    key = "predictions" if config.api == "predict" else "outputs"
    return lambda: processes.rest_predict_probe(url, body, headers, key)

  @contextlib.contextmanager
  def serve(
      self,
      config: rows_lib.ServerConfig,
      model: str,
      threads: int,
      suffix: str,
  ) -> Iterator[tuple[processes.Child, str]]:
    """Starts a server and waits until it answers; stops it on exit.

    Raises ServerStartError (with the most telling log line) when it does not
    start or answer.
    """
    grpc_port = processes.pick_unused_port()
    rest_port = processes.pick_unused_port()
    port = grpc_port if config.protocol == "grpc" else rest_port
    address = f"127.0.0.1:{port}"
    label = server_label(config, threads)
    try:
      env = None
      if config.peer:
        peer = peer_servers.launch(
            config.peer,
            model,
            grpc_port,
            rest_port,
            self._path(f"peer_{label}{suffix}"),
        )
        argv, env = peer.argv, peer.env
        self._log(f"{label}: {peer.settings}")
      else:
        argv = self.argv(config, model, grpc_port, rest_port, threads)
      server = processes.Child(
          config.name, argv, self._path(f"server_{label}{suffix}.log"), env
      )
      self._log(f"{label}: pid {server.pid}: {' '.join(argv)}")
    except (OSError, subprocess.SubprocessError) as exc:
      raise ServerStartError(f"could not start: {exc}") from exc
    self._stack.callback(server.stop)
    try:
      try:
        processes.wait_until(
            server, self._probe(config, address), self._o.startup_timeout_s
        )
      except (RuntimeError, TimeoutError) as exc:
        why = startup_failure(str(exc).strip().splitlines())
        self._log(f"{label}: not serving: {why}")
        raise ServerStartError(why) from exc
      yield server, address
    finally:
      code = server.stop()
      self._log(f"{label}: stopped (exit {code})")
