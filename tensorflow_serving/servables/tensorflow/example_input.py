"""What Classify, Regress and MultiInference share: Examples in, checks.

These APIs feed one DT_STRING `[N]` tensor of serialized tf.Examples to a
signature, so the request's `Input` is turned into that tensor here once, and
the signature checks (method name, single string input) are worded the same
for all three, as upstream's servables/tensorflow/util.cc does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tensorflow_serving.apis import input_pb2
from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

# Upstream's library default is on; the server turns it off unless
# --enable_signature_method_name_check is given, because TF2 exports label
# every signature `tensorflow/serving/predict`.
_method_name_check = True


def set_signature_method_name_check(enabled: bool) -> None:
  """Process-wide, like upstream's SetSignatureMethodNameCheckFeature.

  Global rather than per call so warmup replay, gRPC and REST all agree.
  """
  global _method_name_check
  _method_name_check = bool(enabled)


def signature_method_name_check() -> bool:
  return _method_name_check


@dataclasses.dataclass(frozen=True)
class ExampleSignature:
  """A classify/regress signature checked once: where the examples go and
  which outputs to fetch."""

  sig: signature_lib.Signature
  input_alias: str
  output_aliases: tuple[str, ...]

  @property
  def input_tensor_name(self) -> str:
    return self.sig.inputs[self.input_alias].tensor_name


def check_method_name(
    sig: signature_lib.Signature, expected: str, kind: str
) -> None:
  """`kind` is `classification` or `regression`, as in upstream's message."""
  if _method_name_check and sig.method_name != expected:
    raise status.invalid_argument(
        f"Expected {kind} signature method_name to be {expected}. "
        f"Was: {sig.method_name}"
    )


def example_input_alias(sig: signature_lib.Signature) -> str:
  """The alias of the signature's single DT_STRING input.

  Upstream insists on the alias `inputs`; any alias is accepted here since the
  tensor is unambiguous when there is exactly one input.
  """
  if len(sig.inputs) != 1:
    raise status.invalid_argument("Expected one input Tensor.")
  ((alias, spec),) = sig.inputs.items()
  if spec.tf_dtype != types_pb2.DT_STRING:
    raise status.invalid_argument(
        f"Expected input Tensor '{alias}' of signature {sig.key} to be "
        f"DT_STRING (serialized tf.Examples). Got: {spec.dtype_name}"
    )
  return alias


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
  """The request's examples as a DT_STRING `[N]` array (numpy object).

  With `example_list_with_context`, each element is the serialized context
  followed by the serialized example. Protobuf parsing merges concatenated
  messages, so this is the context merged into the example: features only in
  the context are added, and a feature in both takes the example's value
  (TensorFlow's Example parser does the same and logs "Data loss!" for each
  such duplicate). Upstream builds the tensor the same way.
  """
  kind = request_input.WhichOneof("kind")
  context = b""
  if kind == "example_list":
    examples = request_input.example_list.examples
  elif kind == "example_list_with_context":
    with_context = request_input.example_list_with_context
    examples = with_context.examples
    context = with_context.context.SerializeToString()
  else:
    raise status.invalid_argument("Input is empty.")
  if not examples:
    raise status.invalid_argument("Input is empty.")
  return examples_tensor([e.SerializeToString() for e in examples], context)


def examples_tensor(
    examples: Iterable[bytes], context: bytes | None = None
) -> np.ndarray:
  """DT_STRING `[N]` array from serialized Examples (and an optional context).

  Takes what REST's `json_tensor.parse_example_request` returns
  (`.examples`, `.context`); see `serialized_examples` for the merge.
  """
  if context:
    examples = [context + e for e in examples]
  elif not isinstance(examples, (list, tuple)):
    examples = list(examples)
  if not examples:
    raise status.invalid_argument("Input is empty.")
  array = np.empty(len(examples), dtype=object)
  array[:] = examples
  return array


def dtype_name(value: np.ndarray) -> str:
  """TF DataType name of an output array, for upstream-style messages."""
  try:
    return types_pb2.DataType.Name(tf.as_dtype(value.dtype).as_datatype_enum)
  except TypeError:
    return str(value.dtype)


def shape_str(shape: Sequence[int]) -> str:
  """TensorShape::DebugString style, e.g. `[3,2]`."""
  return "[" + ",".join(str(d) for d in shape) + "]"


def run(bundle, prepared: ExampleSignature, examples) -> dict:
  """Runs a prepared classify/regress signature over a serialized batch."""
  return bundle.run(
      prepared.sig, {prepared.input_alias: examples}, prepared.output_aliases
  )
