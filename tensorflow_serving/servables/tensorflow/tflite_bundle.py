"""A `model.tflite` served like a SavedModel, on a pool of TF Lite interpreters.

With --prefer_tflite_model upstream serves `<version>/model.tflite` instead of
the SavedModel beside it. TfLiteBundle satisfies the same servable contract
as SavedModelBundle (servable.py), so Predict, GetModelMetadata, warmup and
REST need no TF Lite branches. `meta_graph` is None: a .tflite file carries
no MetaGraphDef.

An interpreter is not thread-safe, so each request borrows one of its own.
Interpreters share the model's flatbuffer but each owns a tensor arena, so they
are created on demand up to `num_pools * num_interpreters_per_pool` rather
than all at load. Which signatures a model has, and how each maps onto an
interpreter, is tflite_signature_defs.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import functools
import os
import threading
from typing import Any
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from tensorflow_serving.servables.tensorflow import saved_model_bundle
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.servables.tensorflow import tflite_signature_defs
from tensorflow_serving.util import status

Signature = signature_lib.Signature

TFLITE_MODEL_FILENAME = "model.tflite"

try:
  # LiteRT is where tf.lite.Interpreter moved; prefer it when installed.
  from ai_edge_litert.interpreter import Interpreter as _Interpreter  # pylint: disable=g-import-not-at-top
except ImportError:
  _Interpreter = tf.lite.Interpreter
  # TF 2.21 warns on every construction that tf.lite.Interpreter is deprecated
  # in favour of LiteRT; it still works, and one warning per pooled
  # interpreter would only be noise.
  warnings.filterwarnings(
      "ignore",
      message=r"\s*Warning: tf\.lite\.Interpreter is deprecated",
      category=UserWarning,
  )


def tflite_model_path(export_dir: str) -> str:
  return os.path.join(export_dir, TFLITE_MODEL_FILENAME)


def has_tflite_model(export_dir: str) -> bool:
  return tf.io.gfile.exists(tflite_model_path(export_dir))


class _PooledInterpreter:
  """One interpreter and what it caches between the requests it runs."""

  def __init__(self, interpreter: Any):
    self.interpreter = interpreter
    self._runners: dict[str, Any] = {}
    # Primary-subgraph input shapes as last allocated, so a request with the
    # same batch size skips resize_tensor_input + allocate_tensors.
    self._input_shapes: dict[int, tuple[int, ...]] = {}

  def run(
      self,
      entry: tflite_signature_defs.Entry,
      feeds: Mapping[str, np.ndarray],
      fetches: Sequence[str],
  ) -> list[np.ndarray]:
    """Runs `entry` on arrays keyed by its aliases; returns `fetches`."""
    if entry.runner_key is not None:
      runner = self._runners.get(entry.runner_key)
      if runner is None:
        runner = self.interpreter.get_signature_runner(entry.runner_key)
        self._runners[entry.runner_key] = runner
      # The runner resizes its inputs itself; TF Lite makes that a no-op when
      # the shape is unchanged.
      results = runner(**{entry.inputs[a]: v for a, v in feeds.items()})
      return [results[entry.outputs[a]] for a in fetches]
    try:
      return self._run_primary(entry, feeds, fetches)
    except Exception:
      self._input_shapes.clear()  # Unknown state: re-allocate next time.
      raise

  def _run_primary(
      self,
      entry: tflite_signature_defs.Entry,
      feeds: Mapping[str, np.ndarray],
      fetches: Sequence[str],
  ) -> list[np.ndarray]:
    interpreter = self.interpreter
    resized = False
    for alias, value in feeds.items():
      index = entry.inputs[alias]
      if self._input_shapes.get(index) != value.shape:
        interpreter.resize_tensor_input(index, list(value.shape))
        self._input_shapes[index] = value.shape
        resized = True
    if resized:
      interpreter.allocate_tensors()
    for alias, value in feeds.items():
      interpreter.set_tensor(entry.inputs[alias], value)
    interpreter.invoke()
    return [interpreter.get_tensor(entry.outputs[a]) for a in fetches]


class _InterpreterPool:
  """Lends each caller an interpreter of its own, creating them on demand.

  The most recently returned interpreter is lent first, so a light load keeps
  reusing a few warm interpreters (already allocated for its batch size).
  """

  def __init__(
      self,
      factory: Callable[[], _PooledInterpreter],
      capacity: int,
      first: _PooledInterpreter,
  ):
    self._factory = factory
    self.capacity = capacity
    self._idle = [first]
    self._created = 1
    self._closed = False
    self._cond = threading.Condition()

  @property
  def num_created(self) -> int:
    with self._cond:
      return self._created

  @contextlib.contextmanager
  def borrow(self) -> Iterator[_PooledInterpreter]:
    interpreter = self._take()
    try:
      yield interpreter
    finally:
      with self._cond:
        if self._closed:
          self._created -= 1
        else:
          self._idle.append(interpreter)
        self._cond.notify()

  def _take(self) -> _PooledInterpreter:
    with self._cond:
      while (
          not self._closed and not self._idle and self._created >= self.capacity
      ):
        self._cond.wait()
      if self._closed:
        raise status.unavailable("The TF Lite model has been unloaded.")
      if self._idle:
        return self._idle.pop()
      self._created += 1
    try:
      return self._factory()  # Outside the lock: creation takes a while.
    except BaseException:
      with self._cond:
        self._created -= 1
        self._cond.notify()
      raise

  def close(self) -> None:
    with self._cond:
      self._closed = True
      self._created -= len(self._idle)
      self._idle.clear()
      self._cond.notify_all()


class TfLiteBundle(saved_model_bundle.SignatureRunner):
  """A servable `model.tflite`: signatures, and a way to run them."""

  runtime = "TFLite"

  def __init__(
      self,
      model_content: bytes,
      export_dir: str = "",
      num_pools: int | None = None,
      num_interpreters_per_pool: int = 1,
  ):
    """Builds the first interpreter now, so a bad model fails the load.

    Args:
      model_content: the .tflite flatbuffer; shared by every interpreter.
      export_dir: the version directory it was read from.
      num_pools: upstream's --num_tflite_pools (default: the CPU count).
      num_interpreters_per_pool: upstream's --num_tflite_interpreters_per_pool.
        Requests are not split across interpreters here, so only the product
        of the two matters: it caps the requests run at once.
    """
    self.export_dir = export_dir
    self.meta_graph: meta_graph_pb2.MetaGraphDef | None = None
    if not model_content:
      raise status.invalid_argument(
          f"Empty TF Lite model in {export_dir or 'buffer'}"
      )
    factory = functools.partial(_new_interpreter, model_content)
    first = factory()
    self._entries = tflite_signature_defs.entries_from_interpreter(
        first.interpreter, model_content
    )
    self.signatures: dict[str, Signature] = {
        key: entry.signature for key, entry in self._entries.items()
    }
    pools = num_pools if num_pools is not None else (os.cpu_count() or 1)
    capacity = max(1, pools) * max(1, num_interpreters_per_pool)
    self._pool = _InterpreterPool(factory, capacity, first)

  @property
  def num_interpreters(self) -> int:
    """The most interpreters (and so concurrent requests) this bundle uses."""
    return self._pool.capacity

  @property
  def num_interpreters_created(self) -> int:
    return self._pool.num_created

  def run_validated(
      self,
      sig: Signature,
      inputs: Mapping[str, np.ndarray],
      output_aliases: Sequence[str],
  ) -> dict[str, np.ndarray]:
    """Runs a request `validate` accepted, on a borrowed interpreter."""
    entry, in_alias, out_alias = self._resolve(sig)
    feeds = {in_alias(a): np.ascontiguousarray(v) for a, v in inputs.items()}
    fetches = [out_alias(a) for a in output_aliases]
    with self._pool.borrow() as interpreter:
      try:
        values = interpreter.run(entry, feeds, fetches)
      except Exception as exc:  # pylint: disable=broad-except
        raise saved_model_bundle.with_shape_hints(
            _error_from_tflite(exc), sig, inputs
        ) from exc
    return dict(zip(output_aliases, values))

  def _resolve(
      self, sig: Signature
  ) -> tuple[
      tflite_signature_defs.Entry, Callable[[str], str], Callable[[str], str]
  ]:
    """The entry that runs `sig`, and maps from sig's aliases to the entry's.

    A caller may build its own Signature over the bundle's tensors
    (multi-inference keys one by tensor name), so a signature that is not one
    of ours is matched by tensor names.
    """
    entry = self._entries.get(sig.key)
    if entry is not None and entry.signature is sig:
      return entry, _identity, _identity
    candidates = ([entry] if entry is not None else []) + list(
        self._entries.values()
    )
    for candidate in candidates:
      ins = {s.tensor_name: a for a, s in candidate.signature.inputs.items()}
      outs = {s.tensor_name: a for a, s in candidate.signature.outputs.items()}
      if all(s.tensor_name in ins for s in sig.inputs.values()) and all(
          s.tensor_name in outs for s in sig.outputs.values()
      ):
        return (
            candidate,
            lambda a: ins[sig.inputs[a].tensor_name],  # noqa: B023
            lambda a: outs[sig.outputs[a].tensor_name],  # noqa: B023
        )
    raise status.unimplemented(
        f"Signature {sig.key} does not match a single signature of the TF "
        "Lite model; TF Lite runs one signature at a time."
    )

  def close(self) -> None:
    self._pool.close()


def load_tflite_bundle(
    export_dir: str,
    num_pools: int | None = None,
    num_interpreters_per_pool: int = 1,
) -> TfLiteBundle:
  """Loads `<export_dir>/model.tflite` (through TF's file systems)."""
  path = tflite_model_path(export_dir)
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      content = f.read()
  except tf.errors.OpError as exc:
    raise saved_model_bundle.error_from_tf(exc) from exc
  return TfLiteBundle(content, export_dir, num_pools, num_interpreters_per_pool)


def _identity(alias: str) -> str:
  return alias


def _new_interpreter(model_content: bytes) -> _PooledInterpreter:
  try:
    interpreter = _Interpreter(model_content=model_content)
    # Allocating now surfaces ops this runtime lacks (Flex) at load time.
    interpreter.allocate_tensors()
  except ValueError as exc:  # Not a flatbuffer, or not a TF Lite model.
    raise status.invalid_argument(
        f"Cannot build TF Lite interpreter from model: {exc}"
    ) from exc
  except RuntimeError as exc:
    raise status.internal(
        f"Cannot build TF Lite interpreter from model: {exc}"
    ) from exc
  return _PooledInterpreter(interpreter)


def _error_from_tflite(exc: Exception) -> status.ServingError:
  if isinstance(exc, RuntimeError):
    # Upstream reports a failed Invoke (or re-allocation) as INTERNAL.
    return status.internal(f"Failed to invoke TfLite interpreter: {exc}")
  return saved_model_bundle.error_from_tf(exc)
