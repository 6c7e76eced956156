"""What the supervisor tells each worker process, through its environment."""

from __future__ import annotations

import os

# This worker's end of its channel to the supervisor (an inherited fd).
WORKER_FD = "TF_SERVING_WORKER_FD"
# Which of the --num_workers this process is (0-based), and how many.
WORKER_INDEX = "TF_SERVING_WORKER_INDEX"
NUM_WORKERS = "TF_SERVING_NUM_WORKERS"
# The sockets the supervisor bound (inherited fds): one per worker slot for
# each TCP port, comma-separated in slot order, and the --grpc_socket_path.
GRPC_FDS = "TF_SERVING_WORKER_GRPC_FDS"
REST_FDS = "TF_SERVING_WORKER_REST_FDS"
UNIX_SOCKET_FD = "TF_SERVING_WORKER_UNIX_SOCKET_FD"
# prometheus_client's own switch to its multiprocess mode: where every
# worker keeps its values.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def in_worker() -> bool:
  """Whether this process was started by a --num_workers supervisor."""
  return WORKER_FD in os.environ
