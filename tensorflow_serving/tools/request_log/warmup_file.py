"""Turns logged requests into a warmup file a new version loads with.

Upstream's warmup reads `<version>/assets.extra/tf_serving_warmup_requests`:
a TFRecord file of PredictionLog whose requests it replays before the
version serves (at most 1000 records). The logs already are PredictionLogs,
so a warmup file is a sample of them with what warmup does not read
dropped: the responses, and the request's model version or label (a warmup
request is sent to the version being loaded, whatever it names).
"""

from __future__ import annotations

from collections.abc import Iterable
import os
import random

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import tfrecord_log_collector

WARMUP_RELATIVE_PATH = os.path.join(
    "assets.extra", "tf_serving_warmup_requests"
)
# Upstream's limit on warmup records (servables/tensorflow/util.cc).
MAX_WARMUP_RECORDS = 1000
# What warmup can replay (the other log types fail a load).
WARMUP_LOG_TYPES = frozenset(
    {"predict_log", "classify_log", "regress_log", "multi_inference_log"}
)


def warmup_log(
    log: prediction_log_pb2.PredictionLog,
) -> prediction_log_pb2.PredictionLog | None:
  """The record warmup needs for `log`, or None if warmup cannot replay it."""
  kind = log.WhichOneof("log_type")
  if kind not in WARMUP_LOG_TYPES:
    return None
  out = prediction_log_pb2.PredictionLog()
  request = getattr(out, kind).request
  request.CopyFrom(getattr(log, kind).request)
  specs = (
      [task.model_spec for task in request.tasks]
      if kind == "multi_inference_log"
      else [request.model_spec]
  )
  for spec in specs:
    spec.ClearField("version_choice")
  return out


def sample(
    logs: Iterable[prediction_log_pb2.PredictionLog],
    count: int,
    seed: int | None = 0,
    signature: str | None = None,
) -> list[prediction_log_pb2.PredictionLog]:
  """Up to `count` warmup records, a uniform sample (reservoir) of `logs`.

  `signature`, if given, keeps only requests logged for that signature.
  The sample keeps the logs' order.
  """
  count = min(count, MAX_WARMUP_RECORDS)
  rng = random.Random(seed)
  reservoir: list[tuple[int, prediction_log_pb2.PredictionLog]] = []
  seen = 0
  for log in logs:
    if (
        signature is not None
        and log.log_metadata.model_spec.signature_name != signature
    ):
      continue
    record = warmup_log(log)
    if record is None:
      continue
    if len(reservoir) < count:
      reservoir.append((seen, record))
    else:
      slot = rng.randrange(seen + 1)
      if slot < count:
        reservoir[slot] = (seen, record)
    seen += 1
  return [record for _, record in sorted(reservoir, key=lambda r: r[0])]


def write(records: Iterable[prediction_log_pb2.PredictionLog], path: str):
  """Writes `records` as a TFRecord file at `path` (a version dir or file).

  A directory gets its `assets.extra/tf_serving_warmup_requests`. Returns
  the file written.
  """
  if os.path.isdir(path):
    path = os.path.join(path, WARMUP_RELATIVE_PATH)
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(path, "wb") as f:
    for record in records:
      f.write(tfrecord_log_collector.frame(record.SerializeToString()))
  return path
