r"""Closed-loop load test of Predict over gRPC or REST, one MNIST image a call.

Keeps --concurrency requests outstanding for --warmup then --duration seconds
(or until --max_requests), each carrying a real MNIST test image. Reports
throughput, latency percentiles, errors by status, the CPU the generator
itself burned (so a saturated client is visible) and, given --server_pid,
the server's CPU per request. Several --concurrency levels run one after the
other in this one process, each on fresh connections.

  python -m tensorflow_serving.tools.benchmark.load_test \
      --server=127.0.0.1:8500 --protocol=grpc --client=grpcio \
      --concurrency=1,8,32 --duration=10
"""

from __future__ import annotations

import json
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import loadgen

flags.DEFINE_string("server", "127.0.0.1:8500", "host:port to load.")
flags.DEFINE_enum("protocol", "grpc", load_config.PROTOCOLS, "API to call.")
flags.DEFINE_string(
    "client",
    "",
    "gRPC: grpcio (official client, futures; the default), h2load, "
    "grpcio_aio, raw (this project's light client). REST: wrk (the "
    "default), raw, aiohttp.",
)
flags.DEFINE_list(
    "concurrency",
    ["1"],
    "Requests kept outstanding; a list runs each level in turn.",
)
flags.DEFINE_float("duration", 10.0, "Seconds measured (0: --max_requests).")
flags.DEFINE_float("warmup", 2.0, "Seconds of load before measuring.")
flags.DEFINE_enum(
    "api",
    "predict",
    load_config.APIS,
    "What requests carry: upstream's Predict, the v2 protocol, or v2 REST "
    "with the binary tensor data extension (v2 APIs: wrk and h2load only).",
)
flags.DEFINE_string("model_name", "mnist", "Model to call.")
flags.DEFINE_string("signature_name", "predict_images", "Signature to call.")
flags.DEFINE_string("input_name", "images", "Input tensor of the signature.")
flags.DEFINE_string("output_name", "scores", "Output every response must hold.")
flags.DEFINE_integer("output_size", 10, "Values that output must hold.")
flags.DEFINE_integer(
    "processes",
    1,
    "Worker processes sharing the streams (each its own "
    "event loop); 1 runs them in this process.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "max_requests",
    0,
    "Stop measuring after this many requests (0: no cap).",
    lower_bound=0,
)
flags.DEFINE_bool(
    "check",
    False,
    "Also check each answer's scores: against --expected_scores "
    "when given, else against the first answer for that image.",
)
flags.DEFINE_string(
    "expected_scores",
    "",
    ".npy of float [num_images, output_size] to --check "
    "against (compare.py writes one).",
)
flags.DEFINE_integer(
    "server_pid", 0, "Report this process's (and its children's) CPU use."
)
flags.DEFINE_integer(
    "num_images", 0, "Use only the first N test images.", lower_bound=0
)
flags.DEFINE_string(
    "mnist_dir",
    "/tmp",
    "Directory checked first for the MNIST .gz files (then "
    "the offline copy).",
)
flags.DEFINE_integer(
    "grpc_channels",
    1,
    "gRPC channels (connections) per worker process; h2load's -c.",
    lower_bound=1,
)
flags.DEFINE_enum(
    "event_loop",
    "auto",
    load_config.EVENT_LOOPS,
    "auto: uvloop when installed, except under grpc.aio.",
)
flags.DEFINE_float("timeout", 30.0, "Per-request deadline in seconds.")
flags.DEFINE_string("json_out", "", "Also write every number here as JSON.")
FLAGS = flags.FLAGS


def configs_from_flags() -> list[load_config.LoadConfig]:
  return [
      config_from_flags(int(concurrency)) for concurrency in FLAGS.concurrency
  ]


def config_from_flags(concurrency: int) -> load_config.LoadConfig:
  return load_config.LoadConfig(
      server=FLAGS.server,
      protocol=FLAGS.protocol,
      client=FLAGS.client,
      concurrency=concurrency,
      duration_s=FLAGS.duration,
      warmup_s=FLAGS.warmup,
      api=FLAGS.api,
      model_name=FLAGS.model_name,
      signature_name=FLAGS.signature_name,
      input_name=FLAGS.input_name,
      output_name=FLAGS.output_name,
      output_size=FLAGS.output_size,
      processes=FLAGS.processes,
      max_requests=FLAGS.max_requests,
      check=FLAGS.check,
      expected_scores=FLAGS.expected_scores,
      server_pid=FLAGS.server_pid,
      num_images=FLAGS.num_images,
      mnist_dir=FLAGS.mnist_dir,
      grpc_channels=FLAGS.grpc_channels,
      event_loop=FLAGS.event_loop,
      timeout_s=FLAGS.timeout,
  )


def _fmt(value: float | None, spec: str = ".2f") -> str:
  return "n/a" if value is None else format(value, spec)


def format_summary(summary: dict[str, Any]) -> str:
  """The human-readable report."""
  config = summary["config"]
  lines = [
      f"load_test: {config['protocol']} {config['server']} "
      f"{config['model_name']}/{config['signature_name']}, concurrency "
      f"{config['concurrency']} over {config['processes']} process(es), "
      f"client {summary['client']}",
      f"  window      {summary['elapsed_s']:.2f} s after "
      f"{config['warmup_s']:g} s warmup",
      f"  requests    {summary['requests']} ({summary['ok']} ok, "
      f"{summary['errors']} errors)",
  ]
  if summary["errors_by_status"]:
    lines.append(
        "  errors      "
        + ", ".join(
            f"{kind}: {count}"
            for kind, count in summary["errors_by_status"].items()
        )
    )
  lines.append(f"  throughput  {summary['throughput_rps']:.1f} req/s")
  latency = summary["latency_ms"]
  if latency:
    lines.append(
        "  latency ms  "
        + "  ".join(
            f"{key} {latency[key]:.2f}"
            for key in ("p50", "p90", "p99", "max", "mean")
        )
    )
  lines.append(
      f"  loadgen CPU {_fmt(summary['loadgen_cpu_pct'], '.1f')}% of one core "
      f"({_fmt(summary['loadgen_cpu_us_per_request'], '.0f')} us/request)"
  )
  if config["server_pid"]:
    lines.append(
        f"  server CPU  {_fmt(summary['server_cpu_pct'], '.1f')}% of one core "
        f"({_fmt(summary['server_cpu_us_per_request'], '.0f')} us/request)"
    )
    if summary.get("server_threads"):
      lines.append(
          "  busiest     "
          + ", ".join(
              f"{t['name']} {t['cpu_pct']:.0f}%"
              for t in summary["server_threads"]
          )
      )
  host = summary.get("host_cpu")
  if host:
    lines.append(
        f"  host CPU    busy {host['busy_pct']:.0f}%, idle "
        f"{host['idle_pct']:.0f}%, steal {host['steal_pct']:.0f}% (% of one "
        "core, all processes)"
    )
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    configs = configs_from_flags()
    for config in configs:
      config.validate()
  except ValueError as exc:
    raise app.UsageError(str(exc)) from exc
  summaries = []
  for config in configs:
    summary = loadgen.run(config)
    print(format_summary(summary), flush=True)
    summaries.append(summary)
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w", encoding="utf-8") as f:
      json.dump({"runs": summaries}, f, indent=2, sort_keys=True)
      f.write("\n")
  return 0


if __name__ == "__main__":
  app.run(main)
