"""Serves one SavedModel signature with NVIDIA PyTriton, as its docs show.

PyTriton runs Triton's C++ server (bundled in its wheel) and hands each
batch Triton's dynamic batcher forms to a Python inference callable, here
TensorFlow running the signature. Several instances of the callable (the
same function bound more than once) let batches run side by side.

Runs in the PyTriton venv (setup_pytriton.sh), never under Bazel:

  .data/peers/pytriton/bin/python pytriton_server.py --model_dir=... \
      --http_port=8000 --grpc_port=8001 --metrics_port=8002
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pytriton.decorators
import pytriton.model_config
import pytriton.triton
import tensorflow as tf


def _spec_tensor(
    name: str, spec: tf.TensorSpec
) -> pytriton.model_config.Tensor:
  # Triton's shapes leave out the batch dimension, which the batcher adds.
  return pytriton.model_config.Tensor(
      name=name,
      dtype=spec.dtype.as_numpy_dtype,
      shape=tuple(-1 if d is None else d for d in spec.shape[1:]),
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--model_name", default="mnist")
  parser.add_argument("--signature_name", default="predict_images")
  parser.add_argument("--http_port", type=int, default=8000)
  parser.add_argument("--grpc_port", type=int, default=8001)
  parser.add_argument("--metrics_port", type=int, default=8002)
  parser.add_argument("--max_batch_size", type=int, default=32)
  parser.add_argument("--max_queue_delay_us", type=int, default=0)
  parser.add_argument("--instances", type=int, default=1)
  args = parser.parse_args()
  logging.basicConfig(level=logging.WARNING)

  signature = tf.saved_model.load(args.model_dir).signatures[
      args.signature_name
  ]
  inputs = signature.structured_input_signature[1]
  outputs = signature.structured_outputs

  @pytriton.decorators.batch
  def infer(**feeds: np.ndarray) -> dict[str, np.ndarray]:
    results = signature(**{k: tf.constant(v) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in results.items()}

  config = pytriton.triton.TritonConfig(
      http_address="127.0.0.1",
      http_port=args.http_port,
      grpc_address="127.0.0.1",
      grpc_port=args.grpc_port,
      metrics_address="127.0.0.1",
      metrics_port=args.metrics_port,
  )
  # The Python backend's stub sometimes finds its handshake socket not yet
  # listening on a busy host ("Connection refused" as the model loads):
  # start afresh, as a user's supervisor would.
  for attempt in range(1, 4):
    try:
      with pytriton.triton.Triton(config=config) as server:
        server.bind(
            model_name=args.model_name,
            infer_func=[infer] * args.instances,
            inputs=[_spec_tensor(k, s) for k, s in inputs.items()],
            outputs=[_spec_tensor(k, s) for k, s in outputs.items()],
            config=pytriton.model_config.ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=pytriton.model_config.DynamicBatcher(
                    max_queue_delay_microseconds=args.max_queue_delay_us
                ),
            ),
            strict=True,
        )
        server.serve()

      return
    except Exception:  # pylint: disable=broad-except
      if attempt == 3:
        raise
      logging.exception("PyTriton did not start (try %d of 3)", attempt)


if __name__ == "__main__":
  main()
