r"""A/B of server variants on batched Predict, alternating, in one run.

Variants: this build with its own HTTP/2 state machine (`native`), the same
build over python-hyper h2 (`h2`, --grpc_http2_engine=h2), and optionally
another build of the server (`before`, --baseline_binary: e.g. main's, to
check a change keeps throughput). Every round runs each variant once (the
order reversed every other round) through compare.py's machinery: one
exported MNIST model, the closed-loop load generator, answers checked.

  bazel run -c opt //tensorflow_serving/tools/benchmark:engine_ab -- \
      --rounds=4 --duration=10 --concurrency=32 \
      --baseline_binary=/path/to/main/bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server

Prints each round's req/s, then per variant the median and its ratio to
`native` (the decision rule: adopt h2 only if it costs less than 15%).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import compare
from tensorflow_serving.tools.benchmark import orchestration

flags.DEFINE_integer("rounds", 4, "Rounds; each runs every variant once.")
flags.DEFINE_list(
    "variants", ["native", "h2"], "Engines of this build: native, h2."
)
flags.DEFINE_string(
    "baseline_binary",
    "",
    "Another tensorflow_model_server to include as `before`.",
)
flags.DEFINE_list(
    "ab_configs",
    ["ours_grpc_batching"],
    "compare.py configurations to measure (e.g. add ours_rest_batching).",
)
FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  server_binary: str
  server_args: tuple[str, ...]


def _variants() -> list[Variant]:
  out = [
      Variant(name, "", (f"--grpc_http2_engine={name}",))
      for name in FLAGS.variants
  ]
  if FLAGS.baseline_binary:
    out.append(Variant("before", FLAGS.baseline_binary, ()))
  return out


def main(argv: list[str]) -> int:
  del argv
  base = compare.options_from_flags()
  work = base.work_dir or tempfile.mkdtemp(prefix="tf_serving_ab_")
  base = dataclasses.replace(
      base,
      configs=FLAGS.ab_configs,
      repeats=1,
      in_process_duration_s=0.0,
      sweep_num_batch_threads=(),
      out="",
      json_out="",
      work_dir=work,
  )
  if not base.model_base_path:
    orchestration.run(
        dataclasses.replace(
            base,
            configs=[],
            work_dir=os.path.join(work, "export"),
        )
    )
    base = dataclasses.replace(
        base, model_base_path=os.path.join(work, "export", "mnist_model")
    )
  variants = _variants()
  rates: dict[tuple[str, str, str, int], list[float]] = {}
  cpu: dict[tuple[str, str, str, int], list[float]] = {}
  for round_index in range(FLAGS.rounds):
    order = variants if round_index % 2 == 0 else variants[::-1]
    for variant in order:
      options = dataclasses.replace(
          base,
          server_binary=variant.server_binary,
          server_args=[*base.server_args, *variant.server_args],
          work_dir=os.path.join(work, f"r{round_index}_{variant.name}"),
      )
      (report,) = orchestration.run(options)
      for row in report.rows:
        rps = (row.summary or {}).get("throughput_rps")
        key = (variant.name, row.config.name, row.client, row.concurrency)
        rates.setdefault(key, []).append(rps or 0.0)
        us = (row.summary or {}).get("server_cpu_us_per_request")
        if us is not None:
          cpu.setdefault(key, []).append(us)
        print(
            f"round {round_index + 1} {variant.name:7s} {row.config.name} "
            f"{row.client} c={row.concurrency}: {rps or 0:.0f} req/s, "
            f"server {us or 0:.0f} us/req"
            + (f" (failed: {row.failure})" if row.failure else ""),
            flush=True,
        )
  print(
      "\n| variant | config | client | concurrency | req/s per round | median |"
      " vs native | server us/req (median) |"
  )
  print("|---|---|---|---|---|---|---|---|")
  for (name, config, client, concurrency), values in sorted(rates.items()):
    median = statistics.median(values)
    native = rates.get(("native", config, client, concurrency))
    ratio = (
        f"{median / statistics.median(native):.3f}"
        if native and statistics.median(native)
        else "-"
    )
    rounds = ", ".join(f"{v:.0f}" for v in values)
    us = cpu.get((name, config, client, concurrency))
    us_text = f"{statistics.median(us):.0f}" if us else "-"
    print(
        f"| {name} | {config} | {client} | {concurrency} | {rounds} |"
        f" {median:.0f} | {ratio} | {us_text} |"
    )
  return 0


if __name__ == "__main__":
  sys.exit(app.run(main))
