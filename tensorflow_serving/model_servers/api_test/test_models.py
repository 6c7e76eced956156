"""SavedModels for the API-compatibility tests, exported in-process.

Each exporter writes one SavedModel version directory and returns it. Together
with `half_plus_two` (TF1 SavedModelBuilder) they cover the export paths real
clients use: TF2 `tf.saved_model.save` of a tf.Module, Keras `Model.export`,
string/int tensors, `_bytes` outputs and non-finite floats.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
import shutil

import numpy as np
import tensorflow as tf

# Model names the tests serve, and what they compute.
HALF = "half"  # half_plus_two, TF1: y = 0.5 * x + 2.
TF2 = "tf2"  # y = 3 * x + 1, plus combine/regress/classify/slow.
KERAS = "keras"  # Dense(2) over 3 features, fixed weights (see KERAS_*).
STRINGS = "strings"  # String and int inputs; `_bytes` output.
NONFINITE = "nonfinite"  # log(x): NaN and -Infinity for some inputs.
DTYPES = (
    "dtypes"  # One identity signature per TensorFlow dtype (DTYPE_SIGNATURES).
)

TF2_SCALE = 3.0
TF2_OFFSET = 1.0
KERAS_INPUT = "features"
KERAS_KERNEL = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], np.float32)
KERAS_BIAS = np.array([0.5, -0.5], np.float32)
CLASS_LABELS = ("neg", "pos")


def _parse_x(serialized: tf.Tensor) -> tf.Tensor:
  """[N] serialized tf.Examples with float feature `x` [1] -> [N, 1]."""
  return tf.io.parse_example(
      serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)}
  )["x"]


class _Tf2Module(tf.Module):
  """Signatures over one variable, so loading restores a checkpoint."""

  def __init__(self):
    super().__init__()
    self.scale = tf.Variable(TF2_SCALE)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def predict(self, x):
    return {"y": x * self.scale + TF2_OFFSET}

  @tf.function(
      input_signature=[
          tf.TensorSpec([None], tf.float32, name="a"),
          tf.TensorSpec([None], tf.float32, name="b"),
      ]
  )
  def combine(self, a, b):
    return {"sum": a + b, "product": a * b}

  @tf.function(
      input_signature=[tf.TensorSpec([None, 2], tf.float32, name="matrix")]
  )
  def row_sums(self, matrix):
    return {"sums": tf.reduce_sum(matrix, axis=1)}

  @tf.function(
      input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
  )
  def regress(self, inputs):
    x = _parse_x(inputs)
    return {"outputs": tf.reshape(x * self.scale + TF2_OFFSET, [-1])}

  @tf.function(
      input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
  )
  def classify(self, inputs):
    x = _parse_x(inputs)  # [N, 1]
    n = tf.shape(inputs)[0]
    scores = tf.concat([-x, x * self.scale], axis=1)  # [N, 2]
    classes = tf.tile(tf.constant([list(CLASS_LABELS)]), [n, 1])
    return {"scores": scores, "classes": classes}

  @tf.function(
      input_signature=[
          tf.TensorSpec([None], tf.float32, name="x"),
          tf.TensorSpec([], tf.float32, name="seconds"),
      ]
  )
  def slow(self, x, seconds):
    """y = x after busy-waiting `seconds` inside the graph."""
    start = tf.timestamp()
    deadline = start + tf.cast(seconds, tf.float64)
    (end,) = tf.while_loop(
        lambda now: now < deadline, lambda now: tf.timestamp(), [start]
    )
    with tf.control_dependencies([end]):
      return {"y": tf.identity(x)}


def export_tf2_module(export_dir: str) -> str:
  """TF2 SavedModel with signatures:

  serving_default: x float [-1] -> y = 3x + 1.
  combine: a, b float [-1] -> sum, product.
  row_sums: matrix float [-1, 2] -> sums float [-1].
  regress: inputs string [-1] (tf.Example x) -> outputs = 3x + 1 [-1].
  classify: inputs string [-1] -> scores [-1, 2] = (-x, 3x),
    classes [-1, 2] = ("neg", "pos").
  slow: x float [-1], seconds float [] -> y = x after `seconds`.
  """
  module = _Tf2Module()
  tf.saved_model.save(
      module,
      export_dir,
      signatures={
          "serving_default": module.predict,
          "combine": module.combine,
          "row_sums": module.row_sums,
          "regress": module.regress,
          "classify": module.classify,
          "slow": module.slow,
      },
  )
  return export_dir


def export_keras(export_dir: str) -> str:
  """Keras 3 `Model.export`: features float [-1, 3] -> output_0 [-1, 2]."""
  import keras  # pylint: disable=g-import-not-at-top

  model = keras.Sequential(
      [
          keras.Input(shape=(3,), name=KERAS_INPUT),
          keras.layers.Dense(2, name="dense"),
      ]
  )
  model.get_layer("dense").set_weights([KERAS_KERNEL, KERAS_BIAS])
  model.export(export_dir, verbose=False)
  return export_dir


def keras_expected(features: np.ndarray) -> np.ndarray:
  return np.asarray(features, np.float32) @ KERAS_KERNEL + KERAS_BIAS


class _StringsModule(tf.Module):

  @tf.function(
      input_signature=[
          tf.TensorSpec([None], tf.string, name="text"),
          tf.TensorSpec([None], tf.int64, name="count"),
      ]
  )
  def predict(self, text, count):
    length = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.int64)
    return {"total": length + count, "upper": tf.strings.upper(text)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="data")])
  def echo_bytes(self, data):
    return {
        "data_bytes": data,
        "size": tf.strings.length(data),
    }  # int32, in bytes.

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="n")])
  def int32_square(self, n):
    return {"square": n * n}


def export_strings(export_dir: str) -> str:
  """TF2 SavedModel over strings and ints:

  serving_default: text string [-1], count int64 [-1] ->
    total int64 = UTF-8 length(text) + count, upper string = upper(text).
  echo_bytes: data string [-1] -> data_bytes string (= data),
    size int32 (bytes).
  int32_square: n int32 [-1] -> square int32.
  """
  module = _StringsModule()
  tf.saved_model.save(
      module,
      export_dir,
      signatures={
          "serving_default": module.predict,
          "echo_bytes": module.echo_bytes,
          "int32_square": module.int32_square,
      },
  )
  return export_dir


class _NonFiniteModule(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def predict(self, x):
    return {"log": tf.math.log(x), "echo": tf.identity(x)}


def export_nonfinite(export_dir: str) -> str:
  """serving_default: x float [-1] -> log = log(x), echo = x.

  log(0) = -Infinity and log(-1) = NaN; echo returns NaN/Infinity sent in.
  """
  module = _NonFiniteModule()
  tf.saved_model.save(
      module, export_dir, signatures={"serving_default": module.predict}
  )
  return export_dir


# Signature key -> the dtype of its input `x` and output `y` (= x).
DTYPE_SIGNATURES = {
    "bool": tf.bool,
    "int8": tf.int8,
    "int16": tf.int16,
    "int32": tf.int32,
    "int64": tf.int64,
    "uint8": tf.uint8,
    "uint16": tf.uint16,
    "uint32": tf.uint32,
    "uint64": tf.uint64,
    "half": tf.float16,
    "float": tf.float32,
    "double": tf.float64,
    "string": tf.string,
}


def export_dtypes(export_dir: str) -> str:
  """TF2 SavedModel with one signature per dtype (DTYPE_SIGNATURES):

  <key>: x <dtype> [-1, -1] -> y <dtype> = x. serving_default is `float`.
  """
  module = tf.Module()
  signatures = {}
  for key, dtype in DTYPE_SIGNATURES.items():
    fn = tf.function(
        lambda x: {"y": tf.identity(x)},
        input_signature=[tf.TensorSpec([None, None], dtype, name="x")],
    )
    setattr(module, f"identity_{key}", fn)
    signatures[key] = fn
  signatures["serving_default"] = signatures["float"]
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir


def copy_version(src: str, base_path: str, version: int) -> str:
  """Publishes `src` as `<base_path>/<version>` (copy, then atomic rename)."""
  dst = os.path.join(base_path, str(version))
  tmp = os.path.join(base_path, f".tmp-{version}")
  shutil.copytree(src, tmp)
  os.rename(tmp, dst)
  return dst


def model_config_text(
    models: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> str:
  """Text-format ModelServerConfig serving `models` (name -> base path).

  `extra` adds text-proto fields to a model's `config { ... }` block.
  """
  extra = extra or {}
  parts = ["model_config_list {"]
  for name, base_path in models.items():
    parts.append(
        f"  config {{ name: {name!r} base_path: {base_path!r} "
        f"model_platform: 'tensorflow' {extra.get(name, '')} }}"
    )
  parts.append("}")
  return "\n".join(parts) + "\n"
