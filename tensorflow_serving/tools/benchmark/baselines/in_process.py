r"""The in-process baseline: one thread calling the signature, one image a call.

The ceiling a server is measured against: no network, no serialization, no
batching, just `signature(images=tf.constant(image[None]))` in a loop for
--duration seconds after --warmup. Reports calls/s and latency percentiles.

With --expected_scores_out it also writes the scores of every test image
(one batched call) as .npy, which load_test --check compares answers with.

  python -m tensorflow_serving.tools.benchmark.baselines.in_process \
      --model_base_path=/tmp/mnist --duration=10
"""

from __future__ import annotations

import json
import time
from typing import Any

from absl import app
from absl import flags
import numpy as np

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import probes
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload
from tensorflow_serving.tools.benchmark.baselines import common

flags.DEFINE_string("model_base_path", "", "Directory of version dirs.")
flags.DEFINE_string("signature_name", "predict_images", "Signature to call.")
flags.DEFINE_string("input_name", "images", "Its input.")
flags.DEFINE_string("output_name", "scores", "Its output.")
flags.DEFINE_float("duration", 10.0, "Seconds measured.")
flags.DEFINE_float("warmup", 2.0, "Seconds of calls before measuring.")
flags.DEFINE_integer("num_images", 0, "Use only the first N test images.")
flags.DEFINE_string("mnist_dir", "/tmp", "See load_test --mnist_dir.")
flags.DEFINE_string("json_out", "", "Write the numbers here as JSON.")
flags.DEFINE_string(
    "expected_scores_out", "", "Write every test image's scores here (.npy)."
)
FLAGS = flags.FLAGS


def measure(
    call, images: np.ndarray, duration_s: float, warmup_s: float
) -> dict[str, Any]:
  """Calls `call(one_image_batch)` in a loop; returns rate and latencies."""
  perf_counter = time.perf_counter
  latencies: list[float] = []
  n = len(images)
  end = perf_counter() + warmup_s
  i = 0
  while perf_counter() < end:
    call(images[i % n : i % n + 1])
    i += 1
  cpu = probes.self_cpu_s()
  start = perf_counter()
  end = start + duration_s
  t1 = start
  while t1 < end:
    t0 = t1
    row = i % n
    call(images[row : row + 1])
    t1 = perf_counter()
    latencies.append(t1 - t0)
    i += 1
  elapsed = t1 - start
  cpu = probes.self_cpu_s() - cpu
  latencies.sort()
  return {
      "calls": len(latencies),
      "elapsed_s": elapsed,
      "throughput_rps": len(latencies) / elapsed,
      "latency_ms": stats.latency_ms(latencies),
      "cpu_pct": 100 * cpu / elapsed,
  }


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.model_base_path:
    raise app.UsageError("--model_base_path is required")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  _, model = common.load_model(FLAGS.model_base_path)
  signature = model.signatures[FLAGS.signature_name]
  images = workload.load_images(
      load_config.LoadConfig(
          server="", num_images=FLAGS.num_images, mnist_dir=FLAGS.mnist_dir
      )
  )
  input_name, output_name = FLAGS.input_name, FLAGS.output_name

  def call(batch: np.ndarray):
    return signature(**{input_name: tf.constant(batch)})[output_name]

  if FLAGS.expected_scores_out:
    np.save(FLAGS.expected_scores_out, call(images).numpy())
  result = measure(call, images, FLAGS.duration, FLAGS.warmup)
  result["threads"] = 1
  latency = result["latency_ms"]
  print(
      f"in-process: {result['calls']} calls in {result['elapsed_s']:.2f} s, "
      f"{result['throughput_rps']:.1f} calls/s, p50 {latency['p50']:.3f} "
      f"ms, p99 {latency['p99']:.3f} ms, CPU {result['cpu_pct']:.0f}%",
      flush=True,
  )
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, sort_keys=True)
      f.write("\n")


if __name__ == "__main__":
  app.run(main)
