"""Replays recorded requests during Load, so the first real request is fast.

Upstream reads `<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord
file of PredictionLog, and runs each request before the version becomes
AVAILABLE; any failure fails the load (which is then retried like any other).
"""

from __future__ import annotations

from collections.abc import Callable
import os
import time

from absl import logging
import tensorflow as tf

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.servables.tensorflow import classifier
from tensorflow_serving.servables.tensorflow import multi_inference
from tensorflow_serving.servables.tensorflow import predict_util
from tensorflow_serving.servables.tensorflow import regressor
from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.util import status

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000

# PredictionLog log_type -> replay function. The request modules provide the
# replayers and this module registers them (below), so they need not import
# warmup and there is no import cycle.
_REPLAYERS: dict[
    str,
    Callable[
        [saved_model_bundle.SavedModelBundle, prediction_log_pb2.PredictionLog],
        None,
    ],
] = {}


def register_replayer(log_type: str, fn) -> None:
  _REPLAYERS[log_type] = fn


def _replay_predict(bundle, log):
  predict_util.run_predict(
      bundle, log.predict_log.request, predict_pb2.PredictResponse()
  )


register_replayer("predict_log", _replay_predict)
register_replayer("classify_log", classifier.replay_classify_log)
register_replayer("regress_log", regressor.replay_regress_log)
register_replayer(
    "multi_inference_log", multi_inference.replay_multi_inference_log
)


def warmup_path(export_dir: str) -> str:
  return os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)


def run_warmup(
    bundle: saved_model_bundle.SavedModelBundle,
    export_dir: str,
    num_request_iterations: int = 1,
) -> int:
  """Replays the warmup file if there is one; returns the records replayed."""
  path = warmup_path(export_dir)
  if not tf.io.gfile.exists(path):
    logging.info("No warmup data file found at %s", path)
    return 0
  iterations = max(1, num_request_iterations)
  start = time.monotonic()
  records = 0
  try:
    for raw in tf.compat.v1.io.tf_record_iterator(path):
      records += 1
      if records > MAX_WARMUP_RECORDS:
        raise status.invalid_argument(
            f"Number of warmup records exceeds the maximum "
            f"({MAX_WARMUP_RECORDS}) at {path}"
        )
      log = prediction_log_pb2.PredictionLog()
      try:
        log.ParseFromString(raw)
      except Exception as exc:  # pylint: disable=broad-except
        raise status.data_loss(f"Failed to parse warmup record: {exc}") from exc
      log_type = log.WhichOneof("log_type")
      replay = _REPLAYERS.get(log_type or "")
      if replay is None:
        raise status.unimplemented(
            f"Unsupported log_type for warmup: {log_type}"
        )
      for _ in range(iterations):
        replay(bundle, log)
  except tf.errors.OpError as exc:
    raise status.data_loss(
        f"Failed to read warmup records from {path}: " f"{exc.message}"
    ) from exc
  logging.info(
      "Finished reading warmup data for model at %s. Number of "
      "warmup records read: %d. Elapsed time (microseconds): %d.",
      path,
      records,
      int((time.monotonic() - start) * 1e6),
  )
  return records
