"""TF2 and Keras SavedModels as upstream's tests and users export them.

Three export paths a user of upstream takes, rebuilt from the facts of
upstream's tensorflow_model_server_test.py (not its code):

- `tf.saved_model.save` of a tf.Module / tf.train.Checkpoint with
  tf.functions (test_tf_saved_model_save, ..._multiple_signatures);
- Keras 3 `Model.export` (what `tf.keras` is from TF 2.16 on);
- `tf_keras` (Keras 2, `TF_USE_LEGACY_KERAS=1`) saved with
  `tf.saved_model.save` (test_sequential_keras_saved_model_save).

tf_keras must be chosen before TensorFlow is first imported, so its exports
run in a child process (`python -m ...keras_models legacy_keras DIR`).
"""

from __future__ import annotations

import os
import subprocess
import sys

# Model facts the tests assert on.
TF2_SCALE_V1 = 3.0  # y = v1 * v2 * x
TF2_SCALE_V2 = 2.0
TWO_SIGNATURES_DEFAULT = 1.0  # serving_default returns the scalar 1.0
TWO_SIGNATURES_CUSTOM = 2.0  # custom_signature_key returns the scalar 2.0
CUSTOM_SIGNATURE_KEY = "custom_signature_key"
KERAS_KERNEL = 0.5  # Dense(1) over x [-1, 1]: y = 0.5 * x + 2
KERAS_BIAS = 2.0


def export_tf2_scale(export_dir: str) -> str:
  """`tf.saved_model.save` of y = v1 * v2 * x with x of unknown rank.

  As upstream's test_tf_saved_model_save: a Checkpoint holding two
  variables (3 and 2) and one concrete function over TensorSpec(None), so
  serving_default is {x: float, unknown shape} -> {y}.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  root = tf.train.Checkpoint()
  root.v1 = tf.Variable(TF2_SCALE_V1)
  root.v2 = tf.Variable(TF2_SCALE_V2)
  root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
  concrete = root.f.get_concrete_function(tf.TensorSpec(None, tf.float32))
  tf.saved_model.save(root, export_dir, concrete)
  return export_dir


def export_tf2_two_signatures(export_dir: str) -> str:
  """Two signatures whose output `y` is a constant scalar.

  As upstream's test_tf_saved_model_save_multiple_signatures:
  serving_default returns 1.0 and custom_signature_key 2.0, whatever x is.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  root = tf.train.Checkpoint()
  spec = [tf.TensorSpec(None, tf.float32)]
  root.f = tf.function(
      lambda x: {"y": tf.constant(TWO_SIGNATURES_DEFAULT)},
      input_signature=spec,
  )
  root.g = tf.function(
      lambda x: {"y": tf.constant(TWO_SIGNATURES_CUSTOM)},
      input_signature=spec,
  )
  tf.saved_model.save(
      root,
      export_dir,
      signatures={"serving_default": root.f, CUSTOM_SIGNATURE_KEY: root.g},
  )
  return export_dir


def export_keras3(export_dir: str) -> str:
  """Keras 3 `Model.export`: Input x (1,) -> Dense `y` = 0.5 * x + 2.

  Keras 3 names the signature's output `output_0` and its input after the
  Input layer (`x`).
  """
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  model = keras.Sequential(
      [keras.Input(shape=(1,), name="x"), keras.layers.Dense(1, name="y")]
  )
  model.get_layer("y").set_weights(
      [
          np.array([[KERAS_KERNEL]], np.float32),
          np.array([KERAS_BIAS], np.float32),
      ]
  )
  model.export(export_dir, verbose=False)
  return export_dir


def _legacy_keras_models():
  """Builds the tf_keras models; only in a process with TF_USE_LEGACY_KERAS."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  keras = tf.keras
  if "tf_keras" not in keras.__name__:
    raise RuntimeError(
        f"tf.keras is {keras.__name__}, not tf_keras: set TF_USE_LEGACY_KERAS=1"
        " before TensorFlow is imported"
    )
  identity = keras.models.Sequential()
  identity.add(keras.layers.Input(dtype="float32", shape=(1,), name="x"))
  identity.add(keras.layers.Lambda(lambda t: t, name="y"))
  dense = keras.models.Sequential(
      [
          keras.layers.Input(shape=(1,), name="x"),
          keras.layers.Dense(1, name="y"),
      ]
  )
  dense.get_layer("y").set_weights(
      [
          np.array([[KERAS_KERNEL]], np.float32),
          np.array([KERAS_BIAS], np.float32),
      ]
  )
  return tf, {"identity": identity, "dense": dense}


def export_legacy_keras(exports: dict[str, str]) -> None:
  """tf_keras Sequentials saved with `tf.saved_model.save`, in one child
  process; `exports` maps a kind to its export directory.

  `identity`: upstream's test_sequential_keras_saved_model_save, Input x
  (1,) -> Lambda `y` (identity). `dense`: Input x (1,) -> Dense `y` =
  0.5 * x + 2. tf_keras keys the signature by layer names: {x} -> {y}.
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  argv = [sys.executable, "-m", __name__, "legacy_keras"]
  for kind, export_dir in exports.items():
    argv += [kind, export_dir]
  subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str]) -> int:
  pairs = argv[2:]
  if len(argv) < 4 or argv[1] != "legacy_keras" or len(pairs) % 2:
    print(f"usage: {argv[0]} legacy_keras (identity|dense EXPORT_DIR)...")
    return 2
  tf, models = _legacy_keras_models()
  for kind, export_dir in zip(pairs[::2], pairs[1::2]):
    tf.saved_model.save(models[kind], export_dir)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
