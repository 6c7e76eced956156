"""Small SavedModels for lifecycle tests, and atomic publishing of versions.

The lifecycle tests need to tell which version answered a request, hold a
request open for a while, and publish broken versions; half_plus_two cannot
do the first two, so these models are exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
import shutil

import tensorflow as tf

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

# Signature names of `export_versioned`.
DEFAULT_SIGNATURE = "serving_default"
SLOW_SIGNATURE = "slow"
WARMUP_RELATIVE_PATH = os.path.join(
    "assets.extra", "tf_serving_warmup_requests"
)

# Exporting logs a few INFO lines per model; the server's log is what matters.
tf.get_logger().setLevel("WARNING")


def export_versioned(export_dir: str, version: int) -> str:
  """TF1 model answering y = x + version, so a reply shows who computed it.

  Signatures:
    serving_default: x float [-1] -> y float [-1].
    slow: x float [-1], seconds float [] -> y, after spinning `seconds` in a
      tf.while_loop on tf.timestamp(); it keeps a request (and so a servable
      handle) busy for a known time without Python in the graph.
  The offset is a variable, so loading also restores a checkpoint as a real
  model does.
  """
  graph = tf.Graph()
  with graph.as_default():
    offset = tf.compat.v1.Variable(float(version), name="offset")
    x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
    y = tf.add(x, offset, name="y")
    seconds = tf.compat.v1.placeholder(tf.float32, shape=[], name="seconds")
    start = tf.timestamp()
    deadline = start + tf.cast(seconds, tf.float64)
    (end,) = tf.while_loop(
        lambda now: now < deadline, lambda now: tf.timestamp(), [start]
    )
    with tf.control_dependencies([end]):
      y_slow = tf.identity(tf.add(x, offset), name="y_slow")
    sigs = tf.compat.v1.saved_model.signature_def_utils
    signature_def_map = {
        DEFAULT_SIGNATURE: sigs.predict_signature_def({"x": x}, {"y": y}),
        SLOW_SIGNATURE: sigs.predict_signature_def(
            {"x": x, "seconds": seconds}, {"y": y_slow}
        ),
    }
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map=signature_def_map
      )
      builder.save()
  return export_dir


def corrupt_saved_model(export_dir: str) -> str:
  """Overwrites saved_model.pb with garbage: a version that cannot load."""
  with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
    f.write(b"\x00\xffnot a SavedModel proto\x13\x37" * 64)
  return export_dir


def predict_request(
    x: Sequence[float],
    model_name: str = "m",
    signature: str = DEFAULT_SIGNATURE,
    seconds: float | None = None,
    version: int | None = None,
) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  request.inputs["x"].CopyFrom(tf.make_tensor_proto(list(x), tf.float32))
  if seconds is not None:
    request.inputs["seconds"].CopyFrom(
        tf.make_tensor_proto(seconds, tf.float32)
    )
  return request


def write_warmup_requests(
    export_dir: str, requests: Sequence[predict_pb2.PredictRequest]
) -> str:
  """Writes assets.extra/tf_serving_warmup_requests: one PredictionLog each."""
  path = os.path.join(export_dir, WARMUP_RELATIVE_PATH)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog()
      log.predict_log.request.CopyFrom(request)
      writer.write(log.SerializeToString())
  return path


def write_garbage_warmup(export_dir: str) -> str:
  """A warmup file that is not TFRecord at all: the load must fail."""
  path = os.path.join(export_dir, WARMUP_RELATIVE_PATH)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(b"this is not a TFRecord file, just bytes" * 10)
  return path


def directory_size_bytes(path: str) -> int:
  total = 0
  for dirpath, _, files in os.walk(path):
    for name in files:
      total += os.path.getsize(os.path.join(dirpath, name))
  return total


class Publisher:
  """Publishes versions under a base path the way a careful exporter does.

  Each version is exported into `<base>/.staging-<n>` (a name the server does
  not take for a version) and then renamed to `<base>/<n>`, so the server
  never sees a half-written version. Staging ahead of time (`stage`) keeps the
  export's CPU cost out of a timed section.
  """

  def __init__(self, base_path: str):
    self.base_path = base_path
    os.makedirs(base_path, exist_ok=True)
    self._staged: dict[int, str] = {}

  def stage(
      self,
      version: int,
      export: Callable[[str, int], object] = export_versioned,
      then: Callable[[str], object] | None = None,
  ) -> str:
    """Exports `version` into its staging dir; `then(dir)` may alter it."""
    staging = os.path.join(self.base_path, f".staging-{version}")
    if os.path.exists(staging):
      shutil.rmtree(staging)
    export(staging, version)
    if then is not None:
      then(staging)
    self._staged[version] = staging
    return staging

  def publish(self, version: int) -> str:
    """Atomically makes a staged (or freshly exported) version visible."""
    if version not in self._staged:
      self.stage(version)
    target = version_path(self.base_path, version)
    os.rename(self._staged.pop(version), target)
    return target

  def remove(self, version: int) -> None:
    """Removes a published version; renamed away first, so it is atomic too."""
    doomed = os.path.join(self.base_path, f".removed-{version}")
    os.rename(version_path(self.base_path, version), doomed)
    shutil.rmtree(doomed)


def version_path(base_path: str, version: int) -> str:
  return os.path.join(base_path, str(version))
