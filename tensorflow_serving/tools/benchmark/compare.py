r"""Benchmarks our model server against its peers, with the clients users run.

Exports the MNIST tutorial model once (or takes --model_base_path), runs the
in-process loop (which also writes the expected scores every answer is
checked against), then for each server configuration starts the server on
free loopback ports, waits until a real Predict succeeds, loads it with each
client at each --concurrency (one load_test process per client), and stops
it. Then a num_batch_threads sweep of the batched rows. Prints Markdown
tables and the throughput targets (targets.py), each a ratio within this one
run.

  bazel run -c opt //tensorflow_serving/tools/benchmark:compare -- \
      --duration=10 --runs=3 --out=/tmp/tf_serving_benchmark.md

Servers (--configs): ours_grpc, ours_grpc_batching, naive_grpc (a plain
grpc.aio PredictionService), ours_rest, ours_rest_batching, fastapi (FastAPI
on uvicorn). gRPC rows are loaded with the official grpcio client and h2load,
REST rows with wrk (--grpc_clients, --rest_clients; `raw` adds the
project's own light clients as a further column).

This module is the command line: its flags become orchestration.Options;
orchestration.py runs the comparison and server_lifecycle.py starts, probes
and stops each server.
"""

from __future__ import annotations

import os
import signal
import sys

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import orchestration

CONFIGS = orchestration.CONFIGS
ALL_CONFIGS = orchestration.ALL_CONFIGS

flags.DEFINE_list(
    "configs",
    list(CONFIGS),
    "Server configurations to run, of "
    f"{list(ALL_CONFIGS)} (the v2 ones: ours on the v2 protocol and the "
    "peers, loaded with wrk and h2load).",
)
flags.DEFINE_list(
    "concurrency",
    ["1", "8", "32"],
    "Concurrency levels to load each configuration at.",
)
flags.DEFINE_list(
    "grpc_clients",
    ["grpcio", "h2load", "raw"],
    f"Clients for gRPC rows, of {load_config.CLIENTS['grpc']}.",
)
flags.DEFINE_list(
    "rest_clients",
    ["wrk", "raw"],
    f"Clients for REST rows, of {load_config.CLIENTS['rest']}.",
)
flags.DEFINE_float("duration", 10.0, "Seconds measured per load test.")
flags.DEFINE_float("warmup", 2.0, "Seconds of load before each measurement.")
flags.DEFINE_integer(
    "runs",
    1,
    "Run the whole comparison this many times in a row; each run's "
    "targets are judged on its own, and a last table says which held in "
    "every run.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "repeats",
    1,
    "Within a run, measure every configuration this many times, "
    "alternating the order, and keep each row's best throughput.",
    lower_bound=1,
)
flags.DEFINE_float(
    "in_process_duration",
    None,
    "Seconds for the in-process loop (default: --duration); 0 skips it.",
)
flags.DEFINE_string(
    "out",
    "/tmp/tf_serving_benchmark.md",
    "Write the Markdown report here (relative to the directory "
    "`bazel run` was started in).",
)
flags.DEFINE_string("json_out", "", "Also write every number here as JSON.")
flags.DEFINE_string(
    "model_base_path",
    "",
    "Serve this model (version dirs of the MNIST tutorial "
    "model) instead of exporting one.",
)
flags.DEFINE_integer(
    "training_iteration", 100, "Training steps of the exported model."
)
flags.DEFINE_string(
    "mnist_dir", "/tmp", "Directory checked first for the MNIST .gz files."
)
flags.DEFINE_integer("num_images", 0, "Send only the first N test images.")
flags.DEFINE_string(
    "server_binary",
    "",
    "Our tensorflow_model_server to run (default: the Bazel "
    "target from the runfiles, else `python -m`).",
)
flags.DEFINE_list(
    "server_args",
    [],
    "Extra flags for our server, e.g. "
    "--server_args=--tensorflow_intra_op_parallelism=1",
)
# Batching parameters for ours (a BatchingParameters text proto): as a user
# would first configure it.
flags.DEFINE_integer("max_batch_size", 32, "BatchingParameters field.")
flags.DEFINE_integer(
    "batch_timeout_micros",
    0,
    "BatchingParameters field; 0 runs whatever is queued as soon as a "
    "batch thread is free.",
)
flags.DEFINE_integer("max_enqueued_batches", 64, "BatchingParameters field.")
flags.DEFINE_integer(
    "num_batch_threads",
    0,
    "BatchingParameters field; 0: the number of cores, as upstream's "
    "default and a user's first configuration.",
    lower_bound=0,
)
flags.DEFINE_list(
    "sweep_num_batch_threads",
    ["auto"],
    "num_batch_threads values for the sweep of the batched rows; auto: 1 to "
    "the number of cores (powers of two and the core count past 4 cores); "
    "empty: no sweep.",
)
flags.DEFINE_integer(
    "sweep_concurrency", 32, "Concurrency of the sweep.", lower_bound=1
)
flags.DEFINE_list(
    "sweep_configs",
    ["ours_grpc_batching", "ours_rest_batching"],
    "Batched configurations the sweep runs (those also in --configs).",
)
# The load generator.
flags.DEFINE_integer(
    "processes", 1, "load_test --processes (the raw REST client only)."
)
flags.DEFINE_integer("grpc_channels", 1, "load_test --grpc_channels.")
flags.DEFINE_bool(
    "check_scores",
    True,
    "Check every answer's scores against the in-process ones.",
)
flags.DEFINE_float(
    "startup_timeout",
    180.0,
    "Seconds a server gets to load the model and answer.",
)
flags.DEFINE_string(
    "work_dir",
    "",
    "Keep the model, logs and raw results here (default: a "
    "temporary directory, removed at the end).",
)
FLAGS = flags.FLAGS


def options_from_flags() -> orchestration.Options:
  return orchestration.Options(
      configs=FLAGS.configs,
      concurrency=[int(c) for c in FLAGS.concurrency],
      grpc_clients=FLAGS.grpc_clients,
      rest_clients=FLAGS.rest_clients,
      duration_s=FLAGS.duration,
      warmup_s=FLAGS.warmup,
      repeats=FLAGS.repeats,
      in_process_duration_s=FLAGS.in_process_duration,
      out=FLAGS.out,
      json_out=FLAGS.json_out,
      model_base_path=FLAGS.model_base_path,
      training_iteration=FLAGS.training_iteration,
      mnist_dir=FLAGS.mnist_dir,
      num_images=FLAGS.num_images,
      server_binary=FLAGS.server_binary,
      server_args=FLAGS.server_args,
      max_batch_size=FLAGS.max_batch_size,
      batch_timeout_micros=FLAGS.batch_timeout_micros,
      max_enqueued_batches=FLAGS.max_enqueued_batches,
      num_batch_threads=FLAGS.num_batch_threads,
      sweep_num_batch_threads=orchestration.sweep_points(
          FLAGS.sweep_num_batch_threads, orchestration.cores()
      ),
      sweep_concurrency=FLAGS.sweep_concurrency,
      sweep_configs=FLAGS.sweep_configs,
      processes=FLAGS.processes,
      grpc_channels=FLAGS.grpc_channels,
      check=FLAGS.check_scores,
      startup_timeout_s=FLAGS.startup_timeout,
      work_dir=FLAGS.work_dir,
  )


def _raise_on_sigterm(signum, frame) -> None:
  del frame
  # Unwinds through every `finally`, which stops the children.
  raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Ctrl-C raises KeyboardInterrupt even where the shell started us with
  # SIGINT ignored (a background job); SIGTERM/SIGHUP unwind the same way.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  signal.signal(signal.SIGTERM, _raise_on_sigterm)
  signal.signal(signal.SIGHUP, _raise_on_sigterm)
  try:
    options = options_from_flags()
    options.validate()
  except ValueError as exc:
    raise app.UsageError(str(exc)) from exc
  # `bazel run` runs in the runfiles tree: resolve against the user's cwd.
  cwd = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  for field in ("out", "json_out", "work_dir", "model_base_path"):
    value = getattr(options, field)
    if value and not os.path.isabs(value):
      setattr(options, field, os.path.join(cwd, value))
  try:
    reports = orchestration.run(options, FLAGS.runs)
  except KeyboardInterrupt:
    print(
        "\ninterrupted; every server and load test started was stopped",
        file=sys.stderr,
    )
    sys.exit(130)
  print()
  print(orchestration.markdown(reports), end="")
  print(f"\nWritten to {options.out}")


if __name__ == "__main__":
  app.run(main)
