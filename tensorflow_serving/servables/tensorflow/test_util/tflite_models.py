"""Exports TF Lite test models in-process, beside a SavedModel of the same math.

Each version directory holds both `saved_model.pb` and `model.tflite`, as an
upstream --prefer_tflite_model deployment does, so tests can load either and
compare results and errors.
"""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from tensorflow_serving.servables.tensorflow import tflite_signature_defs

TFLITE_MODEL_FILENAME = "model.tflite"


class _HalfPlusTwo(tf.Module):
  """y = 0.5 * x + 2 (x float [None]), with the variants half_plus_two has."""

  def __init__(self):
    super().__init__()
    self.a = tf.Variable(0.5)
    self.b = tf.Variable(2.0)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def predict(self, x):
    return {"y": self.a * x + self.b}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def two_outputs(self, x):
    return {"y": self.a * x + self.b, "y2": self.a * x + 3.0}

  @tf.function(
      input_signature=[
          tf.TensorSpec([None], tf.float32, name="x"),
          tf.TensorSpec([None], tf.float32, name="x2"),
      ]
  )
  def two_inputs(self, x, x2):
    return {"y": self.a * x + self.b, "y2": self.a * x2 + 3.0}


def _write(export_dir: str, content: bytes) -> str:
  tf.io.gfile.makedirs(export_dir)
  path = os.path.join(export_dir, TFLITE_MODEL_FILENAME)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(content)
  return path


def strip_signature_defs(content: bytes) -> bytes:
  """The same model without signature defs, as older converters wrote them."""
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
  model.signatureDefs = []
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_half_plus_two(
    export_dir: str, signature_defs: bool = True, saved_model: bool = True
) -> str:
  """Writes half_plus_two as `model.tflite` beside its SavedModel.

  With `signature_defs` the .tflite is converted from the SavedModel and keeps
  its signatures (serving_default, two_outputs, two_inputs); without, it holds
  only serving_default's graph and no signature defs, so the server has to
  synthesize one from the tensor names. `saved_model=False` leaves out the
  SavedModel. Returns `export_dir`.
  """
  module = _HalfPlusTwo()
  signatures = {
      "serving_default": module.predict.get_concrete_function(),
      "two_outputs": module.two_outputs.get_concrete_function(),
      "two_inputs": module.two_inputs.get_concrete_function(),
  }
  if saved_model:
    tf.saved_model.save(module, export_dir, signatures=signatures)
  if signature_defs:
    with tempfile.TemporaryDirectory() as tmp:
      source = export_dir if saved_model else tmp
      if not saved_model:
        tf.saved_model.save(module, source, signatures=signatures)
      content = tf.lite.TFLiteConverter.from_saved_model(source).convert()
  else:
    content = strip_signature_defs(
        tf.lite.TFLiteConverter.from_concrete_functions(
            [signatures["serving_default"]], module
        ).convert()
    )
  _write(export_dir, content)
  return export_dir


class _Strings(tf.Module):

  @tf.function(
      input_signature=[
          tf.TensorSpec([None], tf.string, name="s"),
          tf.TensorSpec([None], tf.int32, name="idx"),
      ]
  )
  def pick(self, s, idx):
    return {"picked": tf.gather(s, idx)}


def export_string_gather(export_dir: str) -> str:
  """A .tflite (no SavedModel) with string input and output: s[idx]."""
  module = _Strings()
  content = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.pick.get_concrete_function()], module
  ).convert()
  _write(export_dir, content)
  return export_dir


class _FixedBatch(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="x")])
  def double(self, x):
    return {"y": x * 2.0}


def export_fixed_batch(export_dir: str) -> str:
  """A .tflite whose input is exported with a fixed batch of 1: x [1, 2]."""
  module = _FixedBatch()
  content = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.double.get_concrete_function()], module
  ).convert()
  _write(export_dir, content)
  return export_dir


def export_half_plus_two_with_metadata_signature_defs(export_dir: str) -> str:
  """A TF1-style .tflite whose SignatureDefs live in its metadata.

  As upstream's half_plus_two TF Lite test model: the input tensor is named
  `tflite_input` and the SignatureDef `serving_default` maps `x` onto it and
  `y` onto the output; the model has no TF Lite signature defs of its own.
  """
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 1], name="tflite_input")
    y = tf.add(tf.multiply(x, 0.5), 2.0, name="y")
    with tf.compat.v1.Session(graph=graph) as session:
      content = tf.compat.v1.lite.TFLiteConverter.from_session(
          session, [x], [y]
      ).convert()
    sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
        {"x": x}, {"y": y}
    )
  _write(
      export_dir,
      tflite_signature_defs.write(content, {"serving_default": sig}),
  )
  return export_dir


def export_upstream_half_plus_two_tflite(
    export_dir: str, signature_def: bool = False
) -> str:
  """upstream's saved_model_half_plus_two_tflite(_with_sigdef), rebuilt.

  As upstream's exporter makes them (facts, not its code): a TF1 graph
  converted with `TFLiteConverter.from_session`, input cut at
  `ensure_shape(parse_example(...)["x"], (1, 1))`, y = 0.5 * x + 2. Without
  `signature_def` the input tensor is named `x` and the model has no
  SignatureDefs (the server makes serving_default from tensor names); with
  it the input tensor is `tflite_input` and a SignatureDef serving_default
  {x: tflite_input:0} -> {y: y:0} sits in the model's metadata. No SavedModel
  beside it, as upstream's test data.
  """
  v1 = tf.compat.v1
  graph = tf.Graph()
  with graph.as_default():
    a = v1.Variable(0.5, name="a")
    b = v1.Variable(2.0, name="b")
    serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
    x = v1.parse_example(
        serialized, {"x": v1.FixedLenFeature([1], tf.float32)}
    )["x"]
    x = tf.ensure_shape(
        x, (1, 1), name="tflite_input" if signature_def else "x"
    )
    y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")
    with v1.Session(graph=graph) as session:
      session.run(v1.global_variables_initializer())
      content = v1.lite.TFLiteConverter.from_session(
          session, [x], [y]
      ).convert()
      if signature_def:
        sig = v1.saved_model.signature_def_utils.predict_signature_def(
            {"x": x}, {"y": y}
        )
        content = tflite_signature_defs.write(content, {"serving_default": sig})
  _write(export_dir, content)
  return export_dir
