"""Starting the v2 peers: Seldon MLServer and NVIDIA PyTriton.

They are what a user of the Open Inference Protocol would otherwise run for
a TensorFlow SavedModel, so the comparison runs them on the same model,
each from its own venv (peers/setup_*.sh, never this project's stack), each
with its dynamic batching on. This module only says how to start one: its
command line, environment and configuration files. The comparison waits for
it, loads it and stops it like any other server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess

from absl import flags

from tensorflow_serving.tools.benchmark import processes

flags.DEFINE_string(
    "peer_venv_dir",
    "",
    "Directory holding the peers' venvs (mlserver/, pytriton/), made by "
    "tools/benchmark/peers/setup_*.sh (default: .data/peers of the "
    "workspace).",
)
flags.DEFINE_integer(
    "peer_max_batch_size", 32, "Both peers' largest dynamic batch."
)
flags.DEFINE_float(
    "mlserver_max_batch_time",
    0.001,
    "MLServer's max_batch_time: seconds a batch waits to fill.",
)
flags.DEFINE_integer(
    "mlserver_parallel_workers",
    1,
    "MLServer's parallel_workers: inference worker processes (0 runs the "
    "model in the server's own process; 1, its default, was the fastest of "
    "0, 1 and 2 on 2 cores).",
)
flags.DEFINE_integer(
    "pytriton_instances",
    2,
    "PyTriton's instances of the inference callable (batches run side by "
    "side; 2 was faster than 1 on 2 cores).",
)
flags.DEFINE_integer(
    "pytriton_max_queue_delay_us",
    0,
    "Triton's dynamic batcher max_queue_delay_microseconds.",
)
FLAGS = flags.FLAGS

PEERS = ("mlserver", "pytriton")
_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Launch:
  """How to start one peer."""

  argv: list[str]
  env: dict[str, str]
  # One line for the report: how the peer was configured.
  settings: str


def venv_dir(peer: str) -> str:
  base = FLAGS.peer_venv_dir or os.path.join(
      os.environ.get("BUILD_WORKSPACE_DIRECTORY", os.getcwd()),
      ".data",
      "peers",
  )
  path = os.path.join(base, peer)
  if not os.path.exists(os.path.join(path, "bin", "python")):
    raise FileNotFoundError(
        f"no {peer} venv at {path}: run "
        f"tensorflow_serving/tools/benchmark/peers/setup_{peer}.sh"
    )
  return path


def latest_version(model_base_path: str) -> str:
  """The highest numbered version directory, which the peers serve."""
  versions = [d for d in os.listdir(model_base_path) if d.isdigit()]
  if not versions:
    raise FileNotFoundError(f"no version directory in {model_base_path}")
  return os.path.join(model_base_path, max(versions, key=int))


def launch(
    peer: str,
    model_base_path: str,
    grpc_port: int,
    rest_port: int,
    work_dir: str,
) -> Launch:
  """The command, environment and files that start `peer` on these ports."""
  venv = venv_dir(peer)
  model = latest_version(model_base_path)
  env = dict(processes.subprocess_env())
  env.pop("PYTHONPATH", None)
  env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
  env["VIRTUAL_ENV"] = venv
  metrics_port = processes.pick_unused_port()
  os.makedirs(work_dir, exist_ok=True)
  if peer == "mlserver":
    return _mlserver(
        venv, model, grpc_port, rest_port, metrics_port, work_dir, env
    )
  if peer == "pytriton":
    return _pytriton(venv, model, grpc_port, rest_port, metrics_port, env)
  raise ValueError(f"unknown peer {peer!r}; known: {PEERS}")


def _mlserver(
    venv: str,
    model: str,
    grpc_port: int,
    rest_port: int,
    metrics_port: int,
    work_dir: str,
    env: dict[str, str],
) -> Launch:
  """`mlserver start DIR` with settings.json and one model's settings.

  As MLServer's custom-runtime docs lay it out: the runtime's module beside
  its model-settings.json, which names it as `implementation`; adaptive
  batching from max_batch_size and max_batch_time.
  """
  settings = {
      "debug": False,
      "host": "127.0.0.1",
      "http_port": rest_port,
      "grpc_port": grpc_port,
      "metrics_port": metrics_port,
      "parallel_workers": FLAGS.mlserver_parallel_workers,
  }
  model_settings = {
      "name": "mnist",
      "implementation": "mlserver_runtime.SavedModelRuntime",
      "max_batch_size": FLAGS.peer_max_batch_size,
      "max_batch_time": FLAGS.mlserver_max_batch_time,
      "parameters": {
          "uri": model,
          "extra": {"signature_name": "predict_images"},
      },
  }
  for name, content in (
      ("settings.json", settings),
      ("model-settings.json", model_settings),
  ):
    with open(os.path.join(work_dir, name), "w", encoding="utf-8") as f:
      json.dump(content, f, indent=2)
  shutil.copy(os.path.join(_HERE, "peers", "mlserver_runtime.py"), work_dir)
  return Launch(
      [os.path.join(venv, "bin", "mlserver"), "start", work_dir],
      env,
      f"MLServer: max_batch_size {FLAGS.peer_max_batch_size}, "
      f"max_batch_time {FLAGS.mlserver_max_batch_time:g} s, "
      f"parallel_workers {FLAGS.mlserver_parallel_workers}",
  )


def _python_libdir(python: str) -> str:
  return subprocess.run(
      [
          python,
          "-c",
          "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
      ],
      check=True,
      capture_output=True,
      text=True,
      timeout=60,
  ).stdout.strip()


def _pytriton(
    venv: str,
    model: str,
    grpc_port: int,
    rest_port: int,
    metrics_port: int,
    env: dict[str, str],
) -> Launch:
  """peers/pytriton_server.py in the PyTriton venv.

  Triton's Python-backend stub loads libpython by name; the venv's Python's
  library directory goes first on LD_LIBRARY_PATH, else it finds the
  system's libpython, a different build, and the model never loads.
  """
  python = os.path.join(venv, "bin", "python")
  libdir = _python_libdir(python)
  env["LD_LIBRARY_PATH"] = os.pathsep.join(
      p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p
  )
  return Launch(
      [
          python,
          os.path.join(_HERE, "peers", "pytriton_server.py"),
          f"--model_dir={model}",
          "--model_name=mnist",
          "--signature_name=predict_images",
          f"--http_port={rest_port}",
          f"--grpc_port={grpc_port}",
          f"--metrics_port={metrics_port}",
          f"--max_batch_size={FLAGS.peer_max_batch_size}",
          f"--max_queue_delay_us={FLAGS.pytriton_max_queue_delay_us}",
          f"--instances={FLAGS.pytriton_instances}",
      ],
      env,
      f"PyTriton: max_batch_size {FLAGS.peer_max_batch_size}, "
      f"max_queue_delay_microseconds {FLAGS.pytriton_max_queue_delay_us}, "
      f"{FLAGS.pytriton_instances} instances of the callable",
  )
