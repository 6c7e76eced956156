"""Exports small test models in-process, so tests need no checked-in binaries."""

from __future__ import annotations

import os

import tensorflow as tf


def export_half_plus_two_tf1(export_dir: str) -> str:
  """TF1 SavedModelBuilder model: y = 0.5 * x + 2 with predict, classify and
  regress signatures (like upstream's half_plus_two test model)."""
  graph = tf.Graph()
  with graph.as_default():
    a = tf.compat.v1.Variable(0.5, name="a")
    b = tf.compat.v1.Variable(2.0, name="b")
    x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
    y = tf.add(tf.multiply(a, x), b, name="y")
    x2 = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x2")
    y2 = tf.add(tf.multiply(a, x), 3.0, name="y2")
    serialized = tf.compat.v1.placeholder(
        tf.string, shape=[None], name="tf_example"
    )
    features = tf.compat.v1.parse_example(
        serialized, {"x": tf.compat.v1.FixedLenFeature([1], tf.float32)}
    )
    y_ex = tf.add(tf.multiply(a, features["x"]), b, name="y_ex")
    sigs = tf.compat.v1.saved_model.signature_def_utils
    predict = sigs.predict_signature_def({"x": x}, {"y": y})
    two_outputs = sigs.predict_signature_def({"x": x}, {"y": y, "y2": y2})
    two_inputs = sigs.predict_signature_def(
        {"x": x, "x2": x2}, {"y": y, "y2": y2}
    )
    regress = sigs.regression_signature_def(serialized, y_ex)
    classify = sigs.classification_signature_def(serialized, None, y_ex)
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session,
          ["serve"],
          signature_def_map={
              "serving_default": predict,
              "two_outputs": two_outputs,
              "two_inputs": two_inputs,
              "regress_x_to_y": regress,
              "classify_x_to_y": classify,
          },
      )
      builder.save()
  return export_dir


def export_versions(base: str, versions: list[int]) -> str:
  for v in versions:
    export_half_plus_two_tf1(os.path.join(base, str(v)))
  return base


def export_example_signatures_tf1(export_dir: str) -> str:
  """TF1 model with classify/regress signatures of every supported (and
  several malformed) shape, over serialized tf.Examples with float `x` [1].

  y = 0.5 * x + 2 as in half_plus_two. Kept apart from
  `export_half_plus_two_tf1` so tests of that model's signature list are not
  affected. `tf_example2` is a second string input (y2 = 0.5 * x + 3) for
  MultiInference over distinct input tensors.
  """
  graph = tf.Graph()
  with graph.as_default():
    a = tf.compat.v1.Variable(0.5, name="a")
    b = tf.compat.v1.Variable(2.0, name="b")
    x_float = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
    serialized = tf.compat.v1.placeholder(
        tf.string, shape=[None], name="tf_example"
    )
    spec = {"x": tf.compat.v1.FixedLenFeature([1], tf.float32)}
    x = tf.compat.v1.parse_example(serialized, spec)["x"]  # [N, 1]
    y = tf.add(tf.multiply(a, x), b, name="y_ex")  # [N, 1]
    y_flat = tf.reshape(y, [-1], name="y_flat")  # [N]
    n = tf.shape(serialized)[0]
    scores = tf.concat([y, x], axis=1, name="scores")  # [N, 2]
    classes = tf.tile(tf.constant([["low", "high"]]), [n, 1], name="classes")
    classes3 = tf.tile(tf.constant([["a", "b", "c"]]), [n, 1])
    serialized2 = tf.compat.v1.placeholder(
        tf.string, shape=[None], name="tf_example2"
    )
    x2 = tf.compat.v1.parse_example(serialized2, spec)["x"]
    y2 = tf.add(tf.multiply(a, x2), 3.0, name="y2_ex")  # [N, 1]
    y_from_float = tf.reshape(tf.multiply(a, x_float), [-1, 1])

    sigs = tf.compat.v1.saved_model.signature_def_utils
    consts = tf.compat.v1.saved_model.signature_constants

    def classify(inputs, outputs):
      return sigs.build_signature_def(
          {
              k: tf.compat.v1.saved_model.build_tensor_info(v)
              for k, v in inputs.items()
          },
          {
              k: tf.compat.v1.saved_model.build_tensor_info(v)
              for k, v in outputs.items()
          },
          consts.CLASSIFY_METHOD_NAME,
      )

    def regress(inputs, outputs):
      return sigs.build_signature_def(
          {
              k: tf.compat.v1.saved_model.build_tensor_info(v)
              for k, v in inputs.items()
          },
          {
              k: tf.compat.v1.saved_model.build_tensor_info(v)
              for k, v in outputs.items()
          },
          consts.REGRESS_METHOD_NAME,
      )

    ex = {"inputs": serialized}
    signature_def_map = {
        "serving_default": sigs.predict_signature_def(
            {"x": x_float}, {"y": y_from_float}
        ),
        "classify_x_to_y": sigs.classification_signature_def(
            serialized, None, y
        ),
        "classify_both": classify(ex, {"classes": classes, "scores": scores}),
        "classify_classes_only": classify(ex, {"classes": classes}),
        "classify_custom_alias": classify(
            {"examples": serialized}, {"scores": scores}
        ),
        "classify_other_input": classify(
            {"inputs": serialized2}, {"scores": y2}
        ),
        "classify_mismatched_k": classify(
            ex, {"classes": classes3, "scores": scores}
        ),
        "classify_scores_1d": classify(ex, {"scores": y_flat}),
        "classify_bad_batch": classify(ex, {"scores": tf.constant([[1.0]])}),
        "classify_float_classes": classify(ex, {"classes": scores}),
        "classify_no_known_outputs": classify(ex, {"probabilities": scores}),
        "classify_two_inputs": classify(
            {"inputs": serialized, "other": serialized2}, {"scores": scores}
        ),
        "classify_float_input": classify(
            {"inputs": x_float}, {"scores": y_from_float}
        ),
        "regress_x_to_y": sigs.regression_signature_def(serialized, y),
        "regress_flat": regress(ex, {"outputs": y_flat}),
        "regress_other_input": regress(
            {"inputs": serialized2}, {"outputs": y2}
        ),
        "regress_wide": regress(ex, {"outputs": scores}),
        "regress_bad_batch": regress(ex, {"outputs": tf.constant([1.0])}),
        "regress_int_output": regress(
            ex, {"outputs": tf.cast(y_flat, tf.int64)}
        ),
        "regress_two_outputs": regress(ex, {"outputs": y, "extra": y}),
        "regress_wrong_alias": regress(ex, {"scores": y}),
    }
    with tf.compat.v1.Session(graph=graph) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      builder = tf.compat.v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map=signature_def_map
      )
      builder.save()
  return export_dir


# Signature keys of upstream's saved_model_half_plus_two_cpu (from
# tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py
# and the saved_model_cli listing in upstream's docs).
UPSTREAM_HALF_PLUS_TWO_SIGNATURES = (
    "serving_default",
    "classify_x_to_y",
    "regress_x_to_y",
    "regress_x_to_y2",
    "regress_x2_to_y3",
)
# half_plus_three keeps a regression signature under the method name, as the
# REST API doc's example asks for it ("signature_name":
# "tensorflow/serving/regress").
HALF_PLUS_THREE_REGRESS_KEY = "tensorflow/serving/regress"


def export_upstream_half_plus_two(
    export_dir: str, offset: float = 2.0, regress_key: str = ""
) -> str:
  """The graph of upstream's getting-started model, rebuilt (not copied).

  Facts from upstream's exporter, which the fidelity tests depend on:
  `x` is `identity(parse_example(tf_example)["x"])`, float [-1, 1], so
  Predict feeds it by tensor name and any shape the ops accept runs;
  y = 0.5 * x + offset, y2 = 0.5 * x + 3, y3 = 0.5 * x2 + 3 where `x2`
  (float [-1, 1], default 0 in examples) is the input of the regression
  signature `regress_x2_to_y3`. Signatures: serving_default (predict x -> y),
  classify_x_to_y (scores y), regress_x_to_y, regress_x_to_y2 (over serialized
  tf.Examples) and regress_x2_to_y3 (over float x2). `offset=3` gives
  half_plus_three; `regress_key` adds regress_x_to_y under that key too.
  """
  v1 = tf.compat.v1
  graph = tf.Graph()
  with graph.as_default():
    a = v1.Variable(0.5, name="a")
    b = v1.Variable(offset, name="b")
    c = v1.Variable(3.0, name="c")
    serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
    parsed = v1.parse_example(
        serialized,
        {
            "x": v1.FixedLenFeature([1], tf.float32),
            "x2": v1.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        },
    )
    x = tf.identity(parsed["x"], name="x")
    y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
    y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
    x2 = tf.identity(parsed["x2"], name="x2")
    # Own variables for the x2 path, as upstream keeps it apart from y/y2.
    a2 = v1.Variable(0.5, name="a2")
    c2 = v1.Variable(3.0, name="c2")
    y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")

    info = v1.saved_model.utils.build_tensor_info
    consts = v1.saved_model.signature_constants
    build = v1.saved_model.signature_def_utils.build_signature_def

    def regress(inp, out):
      return build(
          {consts.REGRESS_INPUTS: info(inp)},
          {consts.REGRESS_OUTPUTS: info(out)},
          consts.REGRESS_METHOD_NAME,
      )

    signature_def_map = {
        "serving_default": build(
            {"x": info(x)}, {"y": info(y)}, consts.PREDICT_METHOD_NAME
        ),
        "classify_x_to_y": build(
            {consts.CLASSIFY_INPUTS: info(serialized)},
            {consts.CLASSIFY_OUTPUT_SCORES: info(y)},
            consts.CLASSIFY_METHOD_NAME,
        ),
        "regress_x_to_y": regress(serialized, y),
        "regress_x_to_y2": regress(serialized, y2),
        "regress_x2_to_y3": regress(x2, y3),
    }
    if regress_key:
      signature_def_map[regress_key] = regress(serialized, y)
    with v1.Session(graph=graph) as session:
      session.run(v1.global_variables_initializer())
      builder = v1.saved_model.Builder(export_dir)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map=signature_def_map
      )
      builder.save()
  return export_dir


def export_upstream_half_plus_three(export_dir: str) -> str:
  """half_plus_three (y = 0.5 * x + 3), the model of upstream's REST doc."""
  return export_upstream_half_plus_two(
      export_dir, offset=3.0, regress_key=HALF_PLUS_THREE_REGRESS_KEY
  )
