"""main's --num_workers path: hold the ports, then supervise the workers.

Nothing here imports TensorFlow: the supervisor process stays small and
starts at once. Each worker is this same binary started again with the same
command line (sys.orig_argv, so `python -m` and Bazel's launcher both work);
the environment tells it that it is a worker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile

from absl import logging

from tensorflow_serving.model_servers import model_config
from tensorflow_serving.model_servers import shutdown
from tensorflow_serving.model_servers.workers import environment
from tensorflow_serving.model_servers.workers import sockets
from tensorflow_serving.model_servers.workers import supervisor


def main(flags) -> int:
  """The supervisor's main, or a worker's when the supervisor started it."""
  if environment.in_worker():
    from tensorflow_serving.model_servers import tensorflow_startup  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.model_servers import version  # pylint: disable=g-import-not-at-top

    tensorflow_startup.import_tensorflow(expect_gpu=version.prefers_gpu())
    from tensorflow_serving.model_servers.workers import worker  # pylint: disable=g-import-not-at-top

    return worker.serve(flags)
  return supervise(flags)


def num_workers(flags) -> int:
  """--num_workers, where 0 means one per CPU this process may run on."""
  if flags.num_workers:
    return flags.num_workers
  return len(os.sched_getaffinity(0)) or 1


def _start_failure(message: str) -> int:
  # As server_options.start_failure, which would import TensorFlow.
  line = f"Failed to start server. Error: INVALID_ARGUMENT: {message}"
  logging.error("%s", line)
  print(line, file=sys.stderr, flush=True)
  return 1


def _initial_config(flags) -> bytes | None:
  """The config file as read now, so that every worker starts from one read."""
  if not flags.model_config_file:
    return None
  try:
    return model_config.parse_model_server_config(
        flags.model_config_file
    ).SerializeToString()
  except (OSError, model_config.ConfigError):
    return None  # Each worker reports it as a single server would.


def supervise(flags) -> int:
  """Runs --num_workers workers until SIGTERM/SIGINT; the exit code."""
  count = num_workers(flags)
  tcp: list[socket.socket] = []
  held: list[socket.socket] = []
  inherited: dict[str, list[int]] = {}
  try:
    if flags.port:
      grpc_sockets = sockets.slot_sockets(flags.port, count, dual_stack=False)
      tcp += grpc_sockets
      inherited[environment.GRPC_FDS] = [s.fileno() for s in grpc_sockets]
    # As a single server: REST on the gRPC port is skipped (with an error).
    if flags.rest_api_port and flags.rest_api_port != flags.port:
      rest_sockets = sockets.slot_sockets(
          flags.rest_api_port, count, dual_stack=True
      )
      tcp += rest_sockets
      inherited[environment.REST_FDS] = [s.fileno() for s in rest_sockets]
    if flags.grpc_socket_path:
      unix = sockets.unix_socket(flags.grpc_socket_path)
      held.append(unix)
      inherited[environment.UNIX_SOCKET_FD] = [unix.fileno()]
  except OSError as exc:
    for sock in tcp + held:
      sock.close()
    return _start_failure(f"Failed to BuildAndStart server: {exc}")
  held += tcp
  metrics_dir = tempfile.mkdtemp(prefix="tf_serving_metrics_")
  options = supervisor.Options(
      num_workers=count,
      command=[sys.executable, *sys.orig_argv[1:]],
      metrics_dir=metrics_dir,
      inherited_fds=inherited,
      tcp_sockets=tcp,
      initial_config=_initial_config(flags),
      model_config_file=flags.model_config_file,
      model_config_file_poll_wait_seconds=(
          flags.model_config_file_poll_wait_seconds
      ),
      # A worker drains for --shutdown_grace_seconds and exits at most
      # shutdown.CLEANUP_S later; the supervisor waits a little longer.
      stop_timeout_s=flags.shutdown_grace_seconds + shutdown.CLEANUP_S + 2.0,
      health_timeout_s=flags.worker_health_timeout_seconds,
  )
  logging.info(
      "Starting %d model server workers (pid %d supervises; their metrics "
      "are kept in %s).",
      count,
      os.getpid(),
      metrics_dir,
  )
  try:
    return asyncio.run(supervisor.Supervisor(options).run())
  finally:
    for sock in held:
      sock.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
