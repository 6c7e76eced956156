"""Loader and source adapter that turn a version directory into a servable."""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import gc
import os
import time

from absl import logging
from google.protobuf import text_format
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from tensorflow_serving.batching import batching_options
from tensorflow_serving.batching import batching_session
from tensorflow_serving.core import loader as loader_lib
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import source_adapter
from tensorflow_serving.resources import resources
from tensorflow_serving.servables.tensorflow import device
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import tflite_bundle
from tensorflow_serving.servables.tensorflow import warmup
from tensorflow_serving.util import config_protos
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

# Upstream's estimate: the files on disk, with headroom for the loaded graph.
RAM_ESTIMATE_FACTOR = 1.2
# Per-model batching parameters, read from the version directory.
PER_MODEL_BATCHING_PARAMS_FILE = "batching_params.pbtxt"


@dataclasses.dataclass(frozen=True)
class SavedModelConfig:
  """How every SavedModel version of the tensorflow platform is loaded."""

  tags: Sequence[str] = ("serve",)
  session_config: config_pb2.ConfigProto = dataclasses.field(
      default_factory=config_pb2.ConfigProto
  )
  placement: device.DevicePlacement = device.DevicePlacement(False, "CPU")
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 1
  # --prefer_tflite_model: serve <version>/model.tflite when there is one.
  prefer_tflite_model: bool = False
  num_tflite_pools: int = os.cpu_count() or 1
  num_tflite_interpreters_per_pool: int = 1
  # Set by --enable_batching: versions are served through a BatchingBundle.
  batching: batching_session.BatchingConfig | None = None


def directory_size_bytes(path: str) -> int:
  """Total size of the files under `path`, through TF's file systems."""
  total = 0
  for dirpath, _, files in tf.io.gfile.walk(path):
    for name in files:
      total += tf.io.gfile.stat(os.path.join(dirpath, name)).length
  return total


class SavedModelLoader(loader_lib.Loader):
  """Loads one SavedModel version; the servable is a SavedModelBundle."""

  def __init__(
      self,
      servable_id: servable_id_lib.ServableId,
      export_dir: str,
      config: SavedModelConfig,
  ):
    self._id = servable_id
    self._export_dir = export_dir
    self._config = config
    self._bundle: saved_model_bundle.SavedModelBundle | None = None

  def estimate_resources(self) -> resources.ResourceAllocation:
    size = directory_size_bytes(self._export_dir)
    return resources.ResourceAllocation(
        {resources.RAM_BYTES: int(size * RAM_ESTIMATE_FACTOR)}
    )

  def load(self) -> None:
    session_config = self._config.placement.apply(self._config.session_config)
    m = metrics.get()
    start = time.perf_counter()
    try:
      if self._config.prefer_tflite_model and tflite_bundle.has_tflite_model(
          self._export_dir
      ):
        bundle = tflite_bundle.load_tflite_bundle(
            self._export_dir,
            self._config.num_tflite_pools,
            self._config.num_tflite_interpreters_per_pool,
        )
      else:
        bundle = saved_model_bundle.load_saved_model_bundle(
            self._export_dir, self._config.tags, session_config
        )
    except status.ServingError as exc:
      m.load_attempt_count.labels(self._export_dir, exc.code.name).inc()
      raise
    m.load_attempt_count.labels(self._export_dir, "success").inc()
    m.load_latency.labels(self._export_dir).observe(metrics.elapsed_us(start))
    try:
      # Before warmup: upstream warms up through the session it serves with.
      bundle = self._maybe_wrap_for_batching(bundle)
    except Exception:
      bundle.close()
      raise
    try:
      if self._config.enable_model_warmup:
        start = time.perf_counter()
        warmup.run_warmup(
            bundle,
            self._export_dir,
            self._config.num_request_iterations_for_warmup,
        )
        m.model_warmup_latency.labels(self._export_dir, "OK").observe(
            metrics.elapsed_us(start)
        )
    except Exception as exc:
      m.model_warmup_latency.labels(
          self._export_dir, status.from_exception(exc).code.name
      ).observe(metrics.elapsed_us(start))
      bundle.close()
      raise
    logging.info(
        "Loaded %s from %s on %s",
        self._id,
        self._export_dir,
        self._config.placement.description,
    )
    self._bundle = bundle

  def _maybe_wrap_for_batching(self, bundle):
    batching = self._config.batching
    if batching is None:
      return bundle
    options = batching.options
    if batching.enable_per_model_batching_parameters:
      options = per_model_batching_options(self._export_dir)
      if options is None:
        return bundle  # Upstream batches only versions that ship the file.
    logging.info("Wrapping %s to perform batch processing", self._id)
    return batching_session.wrap(bundle, batching, options)

  def unload(self) -> None:
    if self._bundle is not None:
      self._bundle.close()
      self._bundle = None
      gc.collect()

  def servable(self) -> saved_model_bundle.SavedModelBundle:
    if self._bundle is None:
      raise RuntimeError(f"{self._id} is not loaded")
    return self._bundle


def per_model_batching_options(
    export_dir: str,
) -> batching_options.BatchingOptions | None:
  """Options from `<export_dir>/batching_params.pbtxt`; None if absent.

  A file that does not parse or validate fails the load (INVALID_ARGUMENT).
  Its thread-pool fields are ignored: the pool is the server-wide one.
  """
  path = os.path.join(export_dir, PER_MODEL_BATCHING_PARAMS_FILE)
  if not tf.io.gfile.exists(path):
    return None
  params = config_protos.BatchingParameters()
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      text_format.Parse(f.read(), params)
  except (text_format.ParseError, tf.errors.OpError) as exc:
    raise status.invalid_argument(
        f"Failed to read batching parameters from {path}: {exc}"
    ) from exc
  return batching_options.BatchingOptions.from_proto(params)


class SavedModelBundleSourceAdapter(source_adapter.SourceAdapter):
  """Storage path (a version directory) -> SavedModelLoader."""

  def __init__(self, config: SavedModelConfig):
    super().__init__()
    self._config = config

  def convert(
      self, servable_id: servable_id_lib.ServableId, path: str
  ) -> loader_lib.Loader:
    return SavedModelLoader(servable_id, path, self._config)
