"""TensorFlow SignatureDefs stored in a .tflite file's metadata.

Converters from TF1 sessions write no TF Lite signatures of their own, so
TensorFlow's `signature_def_util` stores the model's TF SignatureDefs in the
flatbuffer's metadata: an entry named `signature_defs_metadata` whose buffer
is a FlexBuffer map from signature key to the serialized SignatureDef.
Upstream's TF Lite session reads that map and serves the model by its keys
(`x`, `y`) rather than by tensor names (`tflite_input`). TensorFlow's pip
package ships no Python binding for that utility, so both directions are
here: `read` for the server and `write` for tests that build such models.

`entries_from_interpreter` gives the signatures a TfLiteBundle serves, from
that metadata, from TF Lite's own signature runners, or synthesized from the
primary subgraph as upstream does, and how each maps onto an interpreter.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

from flatbuffers import flexbuffers
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from tensorflow_serving.servables.tensorflow import signature as signature_lib
from tensorflow_serving.util import status

Signature = signature_lib.Signature

METADATA_NAME = "signature_defs_metadata"

# An input or output as the interpreter knows it: a SignatureRunner's name for
# it, or its tensor index in the primary subgraph.
TensorKey = str | int


@dataclasses.dataclass(frozen=True)
class Entry:
  """How one of the bundle's signatures maps onto an interpreter."""

  signature: Signature
  # SignatureRunner key; None runs the primary subgraph by tensor index (a
  # model without signature defs).
  runner_key: str | None
  inputs: dict[str, TensorKey]  # Signature alias -> interpreter key.
  outputs: dict[str, TensorKey]


def read(model_content: bytes) -> dict[str, meta_graph_pb2.SignatureDef]:
  """The SignatureDefs in `model_content`'s metadata ({} when there are none).

  Raises INVALID_ARGUMENT when the entry exists but cannot be parsed, as
  upstream refuses the load ("Invalid SignatureDefs found in TfLite model").
  """
  try:
    model = schema_fb.Model.GetRootAsModel(model_content, 0)
    buffer_index = None
    for i in range(model.MetadataLength()):
      entry = model.Metadata(i)
      if entry.Name() == METADATA_NAME.encode():
        buffer_index = entry.Buffer()
        break
    if buffer_index is None:
      return {}
    data = model.Buffers(buffer_index).DataAsNumpy()
    mapping = flexbuffers.GetRoot(bytes(data)).AsMap
    signature_defs = {}
    for key, value in zip(mapping.Keys, mapping.Values):
      signature_def = meta_graph_pb2.SignatureDef()
      signature_def.ParseFromString(value.AsStringBytes)
      signature_defs[key.AsKey] = signature_def
    return signature_defs
  except Exception as exc:  # pylint: disable=broad-except
    raise status.invalid_argument(
        f"Invalid SignatureDefs found in TfLite model: {exc}"
    ) from exc


def write(
    model_content: bytes,
    signature_defs: dict[str, meta_graph_pb2.SignatureDef],
) -> bytes:
  """`model_content` with `signature_defs` stored as TensorFlow stores them."""
  builder = flexbuffers.Builder()
  with builder.Map():
    for key in sorted(signature_defs):
      builder.Key(key)
      # A FlexBuffer STRING holding binary proto bytes, as TensorFlow's C++
      # writer stores it; Builder.String would take text only.
      builder._WriteBlob(  # pylint: disable=protected-access
          signature_defs[key].SerializeToString(),
          append_zero=True,
          type_=flexbuffers.Type.STRING,
      )
  payload = bytes(builder.Finish())
  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_content))
  model.metadata = [
      m for m in model.metadata or [] if m.name != METADATA_NAME.encode()
  ]
  buffer = schema_fb.BufferT()
  buffer.data = list(payload)
  model.buffers.append(buffer)
  metadata = schema_fb.MetadataT()
  metadata.name = METADATA_NAME
  metadata.buffer = len(model.buffers) - 1
  model.metadata.append(metadata)
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def entries_from_interpreter(
    interpreter: Any, model_content: bytes
) -> dict[str, Entry]:
  """One entry per signature def, or a synthesized `serving_default`.

  TF SignatureDefs stored in the model's metadata come first: upstream's TF
  Lite session serves by them, so requests name the SignatureDef's keys.
  Then TF Lite's own signature defs (what converters from SavedModels
  write), run through signature runners. A model with neither gets
  `serving_default` over its primary subgraph's tensors, named as upstream
  names them.
  """
  metadata_defs = read(model_content)
  if metadata_defs:
    return {
        key: _metadata_entry(interpreter, key, signature_def)
        for key, signature_def in sorted(metadata_defs.items())
    }
  signature_keys = sorted(interpreter.get_signature_list())
  if not signature_keys:
    return {
        signature_lib.DEFAULT_SERVING_SIGNATURE_DEF_KEY: _synthesized_entry(
            interpreter
        )
    }
  entries = {}
  for key in signature_keys:
    runner = interpreter.get_signature_runner(key)
    inputs = sorted(runner.get_input_details().items())
    outputs = sorted(runner.get_output_details().items())
    entries[key] = Entry(
        signature=_signature(key, inputs, outputs),
        runner_key=key,
        inputs={alias: alias for alias, _ in inputs},
        outputs={alias: alias for alias, _ in outputs},
    )
  return entries


def _metadata_entry(
    interpreter: Any, key: str, signature_def: meta_graph_pb2.SignatureDef
) -> Entry:
  """Runs a metadata SignatureDef on the primary subgraph, by tensor index.

  Its TensorInfo names are TensorFlow's (`tflite_input:0`); the interpreter's
  tensors may carry the name without the `:0` suffix, so both are tried, as
  upstream does. Raises INVALID_ARGUMENT (the load fails) for a name that
  matches no input or output tensor.
  """
  proto = meta_graph_pb2.SignatureDef()
  proto.CopyFrom(signature_def)
  inputs = _tensor_indices(interpreter.get_input_details())
  outputs = _tensor_indices(interpreter.get_output_details())
  input_index = {}
  for alias, info in proto.inputs.items():
    info.name, input_index[alias] = _fix_tensor_name(
        inputs, info.name, f"Signature input {alias}"
    )
  output_index = {}
  for alias, info in proto.outputs.items():
    info.name, output_index[alias] = _fix_tensor_name(
        outputs, info.name, f"Signature output {alias}"
    )
  return Entry(
      signature=Signature.from_proto(key, proto),
      runner_key=None,
      inputs=input_index,
      outputs=output_index,
  )


def _tensor_indices(details: Sequence[Mapping[str, Any]]) -> dict[str, int]:
  return {d["name"]: d["index"] for d in details}


def _fix_tensor_name(
    indices: Mapping[str, int], name: str, what: str
) -> tuple[str, int]:
  for candidate in (name, name.split(":", 1)[0], f"{name}:0"):
    if candidate in indices:
      return candidate, indices[candidate]
  raise status.invalid_argument(f"{what} references an unknown tensor: {name}")


def _synthesized_entry(interpreter: Any) -> Entry:
  """`serving_default` over the primary subgraph's inputs and outputs.

  As upstream, each alias is the tensor's name without its `:N` suffix (the
  full name where stripping would make two aliases collide).
  """
  input_details = interpreter.get_input_details()
  output_details = interpreter.get_output_details()
  inputs = list(zip(_synthesized_aliases(input_details), input_details))
  outputs = list(zip(_synthesized_aliases(output_details), output_details))
  return Entry(
      signature=_signature(
          signature_lib.DEFAULT_SERVING_SIGNATURE_DEF_KEY,
          sorted(inputs, key=lambda p: p[0]),
          sorted(outputs, key=lambda p: p[0]),
      ),
      runner_key=None,
      inputs={alias: d["index"] for alias, d in inputs},
      outputs={alias: d["index"] for alias, d in outputs},
  )


def _synthesized_aliases(details: Sequence[Mapping[str, Any]]) -> list[str]:
  names = [d["name"] for d in details]
  stripped = [name.split(":", 1)[0] for name in names]
  counts = collections.Counter(stripped)
  return [s if counts[s] == 1 else n for s, n in zip(stripped, names)]


def _signature(
    key: str,
    inputs: Sequence[tuple[str, Mapping[str, Any]]],
    outputs: Sequence[tuple[str, Mapping[str, Any]]],
) -> Signature:
  """A Predict Signature, with the SignatureDef that metadata reports.

  The SignatureDef shows the model's shape signature (-1 where a dimension is
  dynamic). Requests are not held to it: the interpreter is resized to each
  request's shapes, as upstream does, and only what TF Lite cannot compute
  fails.
  """
  proto = meta_graph_pb2.SignatureDef(
      method_name=signature_lib.PREDICT_METHOD_NAME
  )
  input_specs = {}
  for alias, details in inputs:
    spec = _tensor_spec(alias, details)
    proto.inputs[alias].CopyFrom(_tensor_info(spec))
    input_specs[alias] = spec
  output_specs = {}
  for alias, details in outputs:
    spec = _tensor_spec(alias, details)
    proto.outputs[alias].CopyFrom(_tensor_info(spec))
    output_specs[alias] = spec
  return Signature(
      key=key,
      method_name=proto.method_name,
      inputs=input_specs,
      outputs=output_specs,
      defaults=frozenset(),
      proto=proto,
  )


def _tensor_spec(
    alias: str, details: Mapping[str, Any]
) -> signature_lib.TensorSpec:
  try:
    tf_dtype = tf.as_dtype(np.dtype(details["dtype"])).as_datatype_enum
  except TypeError as exc:
    raise status.unimplemented(
        f"TF Lite tensor {details['name']} has unsupported type "
        f"{details['dtype']}"
    ) from exc
  # shape_signature has -1 for dynamic dimensions; `shape` is as allocated.
  shape = details.get("shape_signature", details["shape"])
  return signature_lib.TensorSpec(
      alias=alias,
      tensor_name=details["name"],
      tf_dtype=tf_dtype,
      shape=tuple(int(d) for d in shape),
  )


def _tensor_info(spec: signature_lib.TensorSpec) -> meta_graph_pb2.TensorInfo:
  info = meta_graph_pb2.TensorInfo(name=spec.tensor_name, dtype=spec.tf_dtype)
  info.tensor_shape.SetInParent()  # Known rank, even for scalars.
  for size in spec.shape or ():
    info.tensor_shape.dim.add(size=size)
  return info
