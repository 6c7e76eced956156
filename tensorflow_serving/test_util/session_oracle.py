"""TensorFlow's own answer to a feed, the way upstream's server asks for it.

Upstream's Predict (predict_util.cc RunPredict), Classify and Regress call
the C++ `Session::Run(inputs, output_tensor_names, ...)` with the request's
tensors fed by tensor name and pass TensorFlow's status on unchanged. This
module makes the same call through TF's C API (`TF_SessionRun`, bypassing
the Python feed checks that upstream does not have) on a SavedModel loaded
in-process, so a test can state the message upstream returns for a feed
TensorFlow refuses ("Expects arg[0] to be float but string is provided",
"In[0] is not a matrix", ...).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

# Every message TensorFlow gave in this process. Their words depend on the
# machine (oneDNN or Eigen kernels, chosen by CPU and TF_ENABLE_ONEDNN_OPTS),
# so tables that must read the same everywhere name them instead of quoting.
MESSAGES: set[str] = set()


def run(
    export_dir: str, signature_key: str, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray] | tuple[int, str]:
  """What Session::Run answers for `feeds` (alias -> value): the outputs
  (alias -> array), or (error code, first line of TF's message)."""
  graph = tf.Graph()
  with tf.compat.v1.Session(graph=graph) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(
        session, ["serve"], export_dir
    )
    signature = meta_graph.signature_def[signature_key]
    feed = {
        graph.get_tensor_by_name(
            signature.inputs[alias].name
        )._as_tf_output(): value  # pylint: disable=protected-access
        for alias, value in feeds.items()
    }
    fetch = [
        graph.get_tensor_by_name(info.name)._as_tf_output()  # pylint: disable=protected-access
        for _, info in sorted(signature.outputs.items())
    ]
    try:
      values = session._call_tf_sessionrun(None, feed, fetch, [], None)  # pylint: disable=protected-access
    except tf.errors.OpError as e:
      message = e.message.split("\n")[0]
      MESSAGES.add(message)
      return e.error_code, message
  return dict(zip(sorted(signature.outputs), values))


def run_error(
    export_dir: str, signature_key: str, feeds: Mapping[str, np.ndarray]
) -> tuple[int, str]:
  """(error code, first line of TF's message) for `feeds`; AssertionError
  when TensorFlow accepts them."""
  answer = run(export_dir, signature_key, feeds)
  if isinstance(answer, dict):
    raise AssertionError(
        f"TensorFlow accepts {dict(feeds)} for {signature_key}: {answer}"
    )
  return answer


def run_ok(
    export_dir: str, signature_key: str, feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
  """The outputs for `feeds`; AssertionError when TensorFlow refuses them
  (so a test that claims upstream answers a request checks the claim)."""
  answer = run(export_dir, signature_key, feeds)
  if not isinstance(answer, dict):
    raise AssertionError(f"TensorFlow refuses {dict(feeds)}: {answer}")
  return answer


def serialized_examples(*examples: tf.train.Example) -> np.ndarray:
  """The string tensor upstream's Classify/Regress feed: [N] serialized."""
  return np.array([e.SerializeToString() for e in examples], dtype=object)
