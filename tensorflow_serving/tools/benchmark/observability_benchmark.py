r"""What request logging and tracing cost batched Predict, in one run.

Three settings of one build, each round running every setting once (order
reversed every other round) through compare.py's machinery (one exported
MNIST model, h2load for gRPC and wrk for REST, answers checked):

  off      no logging_config, no --otlp_traces_endpoint
  full     logging_config sampling_rate 1.0, tracing at ratio 1.0
  sampled  logging_config sampling_rate 0.01, tracing off
  logging, tracing: each half of `full` alone (not in the default run)

Traces go to an OTLP/HTTP sink this driver runs on loopback (it reads each
export and answers 200, as a collector would, without decoding it); logs go
to TFRecord files in the work directory.

  flock /tmp/heavy.lock bazel run -c opt \
      //tensorflow_serving/tools/benchmark:observability_benchmark -- \
      --rounds=1 --duration=8 --warmup=2 --concurrency=32 \
      --model_base_path=/tmp/models/mnist

Prints each row's req/s, then per setting the median and its ratio to `off`
with the targets (full >= 0.8x, sampled >= 0.97x).
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import statistics
import sys
import tempfile
import threading

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import compare

# Setting -> (logging sampling_rate or None, trace ratio or None).
SETTINGS = {
    "off": (None, None),
    "full": (1.0, 1.0),
    "sampled": (0.01, None),
    # Each half of `full` alone (--settings=off,logging,tracing).
    "logging": (1.0, None),
    "tracing": (None, 1.0),
}
flags.DEFINE_integer("rounds", 1, "Rounds; each runs every setting once.")
flags.DEFINE_list(
    "settings",
    ["off", "full", "sampled"],
    f"Settings, of {list(SETTINGS)}.",
)
flags.DEFINE_list(
    "obs_configs",
    ["ours_grpc_batching", "ours_rest_batching"],
    "compare.py configurations to measure.",
)
FLAGS = flags.FLAGS

TARGETS = {"full": 0.8, "sampled": 0.97}


class OtlpSink(http.server.ThreadingHTTPServer):
  """Accepts OTLP/HTTP trace exports on loopback and drops them."""

  daemon_threads = True

  def __init__(self):
    super().__init__(("127.0.0.1", 0), _SinkHandler)
    self.exports = 0
    threading.Thread(target=self.serve_forever, daemon=True).start()

  @property
  def endpoint(self) -> str:
    return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"


class _SinkHandler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"

  def do_POST(self):  # pylint: disable=invalid-name
    self.rfile.read(int(self.headers.get("Content-Length") or 0))
    self.server.exports += 1  # type: ignore[attr-defined]
    self.send_response(200)
    self.send_header("Content-Type", "application/x-protobuf")
    self.send_header("Content-Length", "0")
    self.end_headers()

  def log_message(self, *args):
    del args


def _server_args(
    setting: str, model: str, work: str, endpoint: str
) -> list[str]:
  """The server flags of one setting (a model config file when logging)."""
  rate, ratio = SETTINGS[setting]
  args = []
  if rate is not None:
    logs = os.path.join(work, "logs", setting) + os.sep
    config = os.path.join(work, f"models_{setting}.config")
    with open(config, "w", encoding="utf-8") as f:
      f.write(
          "model_config_list { config {\n"
          f'  name: "mnist" base_path: "{model}" model_platform: "tensorflow"\n'
          "  logging_config {\n"
          f'    log_collector_config {{ type: "tfrecord" filename_prefix: "{logs}" }}\n'
          f"    sampling_config {{ sampling_rate: {rate} }}\n"
          "  }\n} }\n"
      )
    args.append(f"--model_config_file={config}")
  if ratio is not None:
    args += [
        f"--otlp_traces_endpoint={endpoint}",
        f"--trace_sampling_ratio={ratio}",
    ]
  return args


def main(argv: list[str]) -> int:
  del argv
  base = compare.options_from_flags()
  work = base.work_dir or tempfile.mkdtemp(prefix="tf_serving_obs_")
  base = dataclasses.replace(
      base,
      configs=FLAGS.obs_configs,
      repeats=1,
      in_process_duration_s=0.0,
      sweep_num_batch_threads=(),
      out="",
      json_out="",
      work_dir=work,
  )
  if not base.model_base_path:
    compare.run(
        dataclasses.replace(
            base, configs=[], work_dir=os.path.join(work, "export")
        )
    )
    base = dataclasses.replace(
        base, model_base_path=os.path.join(work, "export", "mnist_model")
    )
  model = os.path.abspath(base.model_base_path)
  sink = OtlpSink()
  rates: dict[tuple[str, str, str, int], list[float]] = {}
  try:
    for round_index in range(FLAGS.rounds):
      order = FLAGS.settings if round_index % 2 == 0 else FLAGS.settings[::-1]
      for setting in order:
        run_dir = os.path.join(work, f"r{round_index}_{setting}")
        os.makedirs(run_dir, exist_ok=True)
        options = dataclasses.replace(
            base,
            server_args=[
                *base.server_args,
                *_server_args(setting, model, run_dir, sink.endpoint),
            ],
            work_dir=run_dir,
        )
        (report,) = compare.run(options)
        for row in report.rows:
          rps = (row.summary or {}).get("throughput_rps")
          key = (setting, row.config.name, row.client, row.concurrency)
          rates.setdefault(key, []).append(rps or 0.0)
          print(
              f"round {round_index + 1} {setting:7s} {row.config.name} "
              f"{row.client} c={row.concurrency}: {rps or 0:.0f} req/s"
              + (f" (failed: {row.failure})" if row.failure else ""),
              flush=True,
          )
  finally:
    sink.shutdown()
    sink.server_close()
  print(f"\nOTLP exports received: {sink.exports}")
  print(
      "\n| setting | config | client | concurrency | req/s per round |"
      " median | vs off | target |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for (setting, config, client, concurrency), values in sorted(
      rates.items(), key=lambda kv: (kv[0][1], FLAGS.settings.index(kv[0][0]))
  ):
    median = statistics.median(values)
    off = rates.get(("off", config, client, concurrency))
    ratio = (
        f"{median / statistics.median(off):.2f}x"
        if off and statistics.median(off)
        else "-"
    )
    target = f">= {TARGETS[setting]}x" if setting in TARGETS else ""
    rounds = ", ".join(f"{v:.0f}" for v in values)
    print(
        f"| {setting} | {config} | {client} | {concurrency} | {rounds} |"
        f" {median:.0f} | {ratio} | {target} |"
    )
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
