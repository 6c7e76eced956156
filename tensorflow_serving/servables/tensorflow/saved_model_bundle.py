"""A loaded SavedModel: a TF Session plus its MetaGraphDef, as upstream serves.

Signatures run through callables built from `CallableOptions` (feeds and
fetches by tensor name), the way the C++ server runs a Session: TensorFlow
itself decides which shapes a graph accepts, so a rank-1 batch fed to a
`[?,1]` placeholder computes as upstream does. Python's
`Session.make_callable(fetches, feed_list)` would instead refuse any shape
that differs from the placeholder's static one, and costs several times more
per call (22 vs 147 us for half_plus_two here). This works for TF1
`SavedModelBuilder`, TF2 `tf.saved_model.save` and Keras exports alike,
since all of them carry SignatureDefs over graph tensors.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
import os
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

Signature = signature_lib.Signature


def format_alias_set(aliases: Iterable[str]) -> str:
  return "{" + ",".join(sorted(aliases)) + "}"


def error_from_tf(exc: Exception) -> status.ServingError:
  """Maps a TensorFlow runtime error onto the canonical code it carries."""
  if isinstance(exc, status.ServingError):
    return exc
  if isinstance(exc, tf.errors.OpError):
    return status.ServingError(status.Code(exc.error_code), exc.message)
  if isinstance(exc, (ValueError, TypeError)):
    # Raised by Session feeds that cannot be converted or have the wrong shape.
    return status.invalid_argument(str(exc))
  return status.internal(f"{type(exc).__name__}: {exc}")


def with_shape_hints(
    error: status.ServingError,
    sig: Signature,
    inputs: Mapping[str, np.ndarray],
) -> status.ServingError:
  """TensorFlow's INVALID_ARGUMENT, then which inputs differ in shape.

  Upstream returns TensorFlow's message alone; naming the inputs whose shape
  differs from the signature's declared one is the only addition, and it
  comes after TensorFlow's words so clients that match on them still do.
  """
  if error.code != status.Code.INVALID_ARGUMENT:
    return error
  hints = [
      hint
      for alias in sorted(inputs)
      if alias in sig.inputs
      and (hint := sig.inputs[alias].shape_hint(inputs[alias])) is not None
  ]
  if not hints:
    return error
  return status.ServingError(
      error.code, f"{error.message} ({'; '.join(hints)})"
  )


class SignatureRunner(abc.ABC):
  """What every servable bundle offers: signatures, validated runs.

  Validation and its messages live here once, so a client gets the same
  errors whether a version is served from a SavedModel or a .tflite file.
  """

  signatures: dict[str, Signature]
  export_dir: str
  # The servable contract (servable.py): the runtime_latency label, and no
  # batch scheduler of its own (BatchingBundle wraps a bundle for that).
  runtime = "TF1"
  batches = False

  def run(
      self,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> dict[str, np.ndarray]:
    """Validates `inputs` against `sig` and runs it; returns outputs by alias.

    Error messages follow upstream's predict_util (clients match on them).
    """
    output_aliases = self.validate(sig, inputs, output_filter)
    return self.run_validated(sig, inputs, output_aliases)

  def validate(
      self,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_filter: Sequence[str] = (),
  ) -> tuple[str, ...]:
    """Raises INVALID_ARGUMENT unless `run` would accept the request.

    Returns the output aliases to fetch. Split from `run` so a batching
    wrapper can reject a bad request before it joins (and fails) a batch.
    """
    _check_input_aliases(sig, inputs)
    output_aliases = _resolve_output_filter(sig, output_filter)
    for index, alias in enumerate(sorted(inputs)):
      sig.inputs[alias].check_dtype(inputs[alias], index)
    return output_aliases

  @abc.abstractmethod
  def run_validated(
      self,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_aliases: Sequence[str],
  ) -> dict[str, np.ndarray]:
    """Runs a request `validate` accepted; fetches `output_aliases` in order."""

  @abc.abstractmethod
  def close(self) -> None:
    """Releases the runtime (session or interpreters)."""


class SavedModelBundle(SignatureRunner):
  """A servable SavedModel version: signatures, and a way to run them."""

  def __init__(
      self,
      session: tf.compat.v1.Session,
      meta_graph: meta_graph_pb2.MetaGraphDef,
      export_dir: str,
      run_in_caller_thread: bool = False,
  ):
    self.session = session
    self.meta_graph = meta_graph
    self.export_dir = export_dir
    self._run_in_caller_thread = run_in_caller_thread
    self.signatures: dict[str, Signature] = (
        signature_lib.signatures_from_meta_graph(meta_graph)
    )
    self._callables: dict[tuple, Callable] = {}
    self._callables_lock = threading.Lock()

  def run_validated(
      self,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_aliases: Sequence[str],
  ) -> dict[str, np.ndarray]:
    """Runs a request `validate` accepted; fetches `output_aliases` in order."""
    feed_aliases = tuple(sorted(inputs))
    output_aliases = tuple(output_aliases)
    fn = self._callable(sig, feed_aliases, output_aliases)
    try:
      values = fn(*(inputs[a] for a in feed_aliases))
    except Exception as exc:  # pylint: disable=broad-except
      raise with_shape_hints(error_from_tf(exc), sig, inputs) from exc
    return dict(zip(output_aliases, values))

  def _callable(
      self,
      sig: Signature,
      feed_aliases: tuple[str, ...],
      output_aliases: tuple[str, ...],
  ) -> Callable:
    key = (sig.key, feed_aliases, output_aliases)
    fn = self._callables.get(key)
    if fn is None:
      with self._callables_lock:
        fn = self._callables.get(key)
        if fn is None:
          options = config_pb2.CallableOptions(
              feed=[sig.inputs[a].tensor_name for a in feed_aliases],
              fetch=[sig.outputs[a].tensor_name for a in output_aliases],
          )
          if self._run_in_caller_thread:
            options.run_options.inter_op_thread_pool = -1
          fn = _callable_from_options(self.session, options)
          self._callables[key] = fn
    return fn

  def close(self) -> None:
    self._callables.clear()
    self.session.close()


def _callable_from_options(
    session: tf.compat.v1.Session, options: config_pb2.CallableOptions
) -> Callable:
  """The Session callable the C++ API's MakeCallable would give.

  TF's Python API exposes it only under a private name; it is what
  `make_callable` itself builds on once it has checked shapes in Python.
  """
  return session._make_callable_from_options(options)


def _check_input_aliases(sig: Signature, inputs: Mapping[str, np.ndarray]):
  sent = set(inputs)
  expected = set(sig.inputs)
  extra = sent - expected
  missing = expected - sent - sig.defaults
  if extra or missing:
    raise status.invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({format_alias_set(sent)}) != len({format_alias_set(expected)}). "
        f"Sent extra: {format_alias_set(extra)}. "
        f"Missing but required: {format_alias_set(missing)}."
    )


def _resolve_output_filter(
    sig: Signature, output_filter: Sequence[str]
) -> tuple[str, ...]:
  if not output_filter:
    return tuple(sig.outputs)
  seen: set[str] = set()
  for alias in output_filter:
    if alias not in sig.outputs:
      raise status.invalid_argument(
          f"output tensor alias not found in signature: {alias} Outputs "
          f"expected to be in the set {format_alias_set(sig.outputs)}."
      )
    if alias in seen:
      raise status.invalid_argument(f"duplicate output tensor alias: {alias}")
    seen.add(alias)
  return tuple(output_filter)


def runs_in_caller_thread(
    session_config: config_pb2.ConfigProto | None,
) -> bool:
  """Whether signatures should run their ops in the calling thread.

  The server runs each request (or batch) on a thread of its own already, so
  handing the graph to TensorFlow's inter-op pool only adds two thread hops:
  on the MNIST softmax a run took 7.5 us of CPU in the caller's thread
  against 35 us through the pool (78 against 170 us for 32 rows). That is
  the default; a user who sized the inter-op pool (or asked for per-session
  or named pools) keeps it, as upstream would use it.
  """
  if session_config is None:
    return True
  return (
      session_config.inter_op_parallelism_threads == 0
      and not session_config.use_per_session_threads
      and not session_config.session_inter_op_thread_pool
  )


def load_saved_model_bundle(
    export_dir: str,
    tags: Sequence[str],
    session_config: config_pb2.ConfigProto | None = None,
) -> SavedModelBundle:
  """Loads the MetaGraph tagged `tags` from `export_dir` into a new Session."""
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph, config=session_config)
  try:
    with graph.as_default():
      meta_graph = tf.compat.v1.saved_model.loader.load(
          session, list(tags), export_dir
      )
  except Exception as exc:  # pylint: disable=broad-except
    session.close()
    if isinstance(exc, RuntimeError) and "MetaGraphDef" in str(exc):
      raise status.not_found(str(exc)) from exc
    if isinstance(exc, OSError) and "Cannot parse file" in str(exc):
      # A truncated or corrupt saved_model.pb: upstream reports DATA_LOSS.
      raise status.data_loss(
          f"Can't parse {os.path.join(export_dir, 'saved_model.pb')} as "
          "binary proto"
      ) from exc
    raise error_from_tf(exc) from exc
  return SavedModelBundle(
      session,
      meta_graph,
      export_dir,
      run_in_caller_thread=runs_in_caller_thread(session_config),
  )
