"""Which device a servable runs on, decided once per process.

A CPU build hides GPUs from every session, so a CPU server behaves the same on
any host. A CUDA build (`bazel build --config=cuda`) lets TensorFlow place ops
on a visible GPU and says clearly when none is visible and it falls back to CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses

from absl import logging
from tensorflow.core.protobuf import config_pb2


@dataclasses.dataclass(frozen=True)
class DevicePlacement:
  """The outcome of device selection: what sessions are told, and why."""

  use_gpu: bool
  description: str

  def apply(self, config: config_pb2.ConfigProto) -> config_pb2.ConfigProto:
    """Returns a copy of `config` restricted to the chosen device kind."""
    out = config_pb2.ConfigProto()
    out.CopyFrom(config)
    if self.use_gpu:
      # Ops without a GPU kernel (string parsing, lookups) stay on CPU.
      out.allow_soft_placement = True
    else:
      out.device_count["GPU"] = 0
    return out


def _list_visible_gpus() -> list[str]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  return [d.name for d in tf.config.list_physical_devices("GPU")]


def select_placement(
    prefer_gpu: bool,
    list_gpus: Callable[[], Sequence[str]] = _list_visible_gpus,
) -> DevicePlacement:
  """Chooses GPU when the build asks for it and one is visible, else CPU."""
  if not prefer_gpu:
    return DevicePlacement(False, "CPU (CPU build)")
  gpus = list(list_gpus())
  if gpus:
    placement = DevicePlacement(True, f"GPU ({', '.join(gpus)})")
    logging.info(
        "CUDA build: models will be placed on %s", placement.description
    )
    return placement
  logging.warning(
      "CUDA build, but no GPU is visible to TensorFlow: serving on CPU."
  )
  return DevicePlacement(False, "CPU (CUDA build, no GPU visible)")
