r"""Trains the MNIST softmax-regression tutorial model and exports a SavedModel.

Usage: mnist_saved_model.py [--training_iteration=x] [--model_version=y] \
    export_dir

The model is written to `export_dir/<model_version>/` with the `serve` tag and
two signatures, matching upstream's example so its clients work unchanged:
  predict_images   Predict: `images` float [-1, 784] -> `scores` float [-1, 10]
  serving_default  Classify: serialized tf.Examples (`x`: 784 floats) ->
                   `classes` string [-1, 10] and `scores` float [-1, 10], both
                   ordered from the most to the least likely digit.

A model server polls `export_dir` for integer-named version directories, so
the export is built in a hidden sibling (`.tmp-<version>-<random>`) and renamed
into place once complete. An existing version is never overwritten.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys

from absl import app
from absl import flags
import tensorflow as tf

from tensorflow_serving.example import mnist_input_data

FLAGS = flags.FLAGS
flags.DEFINE_integer(
    "training_iteration", 1000, "Number of training iterations.", lower_bound=1
)
flags.DEFINE_integer(
    "model_version", 1, "Version number of the model.", lower_bound=1
)
flags.DEFINE_string(
    "work_dir", "/tmp", "Directory checked first for the MNIST .gz files."
)

USAGE = (
    "Usage: mnist_saved_model.py [--training_iteration=x] "
    "[--model_version=y] export_dir"
)
BATCH_SIZE = 50
LEARNING_RATE = 0.01
SEED = 42

_v1 = tf.compat.v1
_sig = _v1.saved_model.signature_constants


def _export(
    sess: _v1.Session,
    export_path: str,
    serialized: tf.Tensor,
    x: tf.Tensor,
    y: tf.Tensor,
    classes: tf.Tensor,
    top_scores: tf.Tensor,
) -> None:
  """Writes the graph, variables and both signatures to export_path."""
  info = _v1.saved_model.utils.build_tensor_info
  classification = _v1.saved_model.signature_def_utils.build_signature_def(
      inputs={_sig.CLASSIFY_INPUTS: info(serialized)},
      outputs={
          _sig.CLASSIFY_OUTPUT_CLASSES: info(classes),
          _sig.CLASSIFY_OUTPUT_SCORES: info(top_scores),
      },
      method_name=_sig.CLASSIFY_METHOD_NAME,
  )
  prediction = _v1.saved_model.signature_def_utils.build_signature_def(
      inputs={"images": info(x)},
      outputs={"scores": info(y)},
      method_name=_sig.PREDICT_METHOD_NAME,
  )
  builder = _v1.saved_model.Builder(export_path)
  builder.add_meta_graph_and_variables(
      sess,
      [_v1.saved_model.tag_constants.SERVING],
      signature_def_map={
          "predict_images": prediction,
          _sig.DEFAULT_SERVING_SIGNATURE_DEF_KEY: classification,
      },
      # Run at load time so the label table is ready for Classify.
      main_op=_v1.tables_initializer(),
      strip_default_attrs=True,
  )
  builder.save()


def train_and_export(
    base_path: str, version: int, iterations: int, work_dir: str
) -> None:
  """Trains the model and atomically publishes `<base_path>/<version>`."""
  final_path = os.path.join(base_path, str(version))
  if os.path.exists(final_path):
    sys.exit(
        f"Error: {final_path} already exists; model version {version} "
        "is not overwritten. Pick another --model_version."
    )
  try:
    mnist = mnist_input_data.read_data_sets(work_dir, one_hot=True, seed=SEED)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"Error: {e}")

  graph = tf.Graph()
  with graph.as_default():
    _v1.set_random_seed(SEED)
    serialized = _v1.placeholder(tf.string, shape=[None], name="tf_example")
    parsed = _v1.parse_example(
        serialized, {"x": _v1.FixedLenFeature(shape=[784], dtype=tf.float32)}
    )
    # Training feeds `x` directly; serving reaches it through the parser.
    x = tf.identity(parsed["x"], name="x")
    y_ = _v1.placeholder(tf.float32, shape=[None, 10])
    w = _v1.get_variable(
        "weights", [784, 10], initializer=_v1.zeros_initializer()
    )
    b = _v1.get_variable("biases", [10], initializer=_v1.zeros_initializer())
    logits = tf.matmul(x, w) + b
    y = tf.nn.softmax(logits, name="y")
    # Summed cross-entropy as in the tutorial, computed from the logits so
    # that a saturated softmax cannot produce log(0).
    cross_entropy = tf.reduce_sum(
        tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=logits)
    )
    train_step = _v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(
        cross_entropy
    )

    top_scores, top_indices = tf.nn.top_k(y, k=10)
    labels = _v1.lookup.StaticHashTable(
        _v1.lookup.KeyValueTensorInitializer(
            tf.range(10, dtype=tf.int64),
            tf.constant([str(i) for i in range(10)]),
        ),
        default_value="UNK",
    )
    classes = labels.lookup(tf.cast(top_indices, tf.int64))
    correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))

    with _v1.Session(graph=graph) as sess:
      sess.run(_v1.global_variables_initializer())
      print("Training model...")
      for _ in range(iterations):
        images, one_hot = mnist.train.next_batch(BATCH_SIZE)
        sess.run(train_step, feed_dict={x: images, y_: one_hot})
      print(
          "training accuracy {:g}".format(
              sess.run(
                  accuracy,
                  feed_dict={x: mnist.test.images, y_: mnist.test.labels},
              )
          )
      )
      print("Done training!")

      print("Exporting trained model to", final_path)
      os.makedirs(base_path, exist_ok=True)
      # Not an integer, and hidden: a polling server never picks it up.
      tmp_path = os.path.join(
          base_path, f".tmp-{version}-{secrets.token_hex(4)}"
      )
      try:
        _export(sess, tmp_path, serialized, x, y, classes, top_scores)
        if os.path.exists(final_path):
          sys.exit(
              f"Error: {final_path} appeared during the export; model "
              f"version {version} is not overwritten."
          )
        os.rename(tmp_path, final_path)
      finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
  print("Done exporting!")


def main(argv: list[str]) -> None:
  if len(argv) != 2 or argv[-1].startswith("-"):
    sys.exit(USAGE)
  tf.compat.v1.disable_eager_execution()
  train_and_export(
      argv[1], FLAGS.model_version, FLAGS.training_iteration, FLAGS.work_dir
  )


if __name__ == "__main__":
  app.run(main)
