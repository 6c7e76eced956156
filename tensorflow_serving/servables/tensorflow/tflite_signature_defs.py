"""TensorFlow SignatureDefs stored in a .tflite file's metadata.

Converters from TF1 sessions write no TF Lite signatures of their own, so
TensorFlow's `signature_def_util` stores the model's TF SignatureDefs in the
flatbuffer's metadata: an entry named `signature_defs_metadata` whose buffer
is a FlexBuffer map from signature key to the serialized SignatureDef.
Upstream's TF Lite session reads that map and serves the model by its keys
(`x`, `y`) rather than by tensor names (`tflite_input`). TensorFlow's pip
package ships no Python binding for that utility, so both directions are
here: `read` for the server and `write` for tests that build such models.
"""

from __future__ import annotations

from flatbuffers import flexbuffers
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.lite.python import schema_py_generated as schema_fb
from tensorflow.lite.tools import flatbuffer_utils

from tensorflow_serving.util import status

METADATA_NAME = "signature_defs_metadata"


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
