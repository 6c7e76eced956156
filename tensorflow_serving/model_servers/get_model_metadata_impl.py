"""GetModelMetadata over protos: only `signature_def`, as upstream."""

from __future__ import annotations

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import status

SIGNATURE_DEF_FIELD = "signature_def"


def get_model_metadata(
    core: server_core_lib.ServerCore,
    request: get_model_metadata_pb2.GetModelMetadataRequest,
) -> get_model_metadata_pb2.GetModelMetadataResponse:
  if not request.HasField("model_spec"):
    raise status.invalid_argument("Missing ModelSpec")
  if not request.metadata_field:
    raise status.invalid_argument(
        "GetModelMetadataRequest must specify at least one metadata_field"
    )
  for field in request.metadata_field:
    if field != SIGNATURE_DEF_FIELD:
      raise status.invalid_argument(f"Metadata field {field} is not supported")
  response = get_model_metadata_pb2.GetModelMetadataResponse()
  with core.get_servable_handle(request.model_spec) as handle:
    bundle = handle.servable
    response.model_spec.name = handle.id.name
    response.model_spec.version.value = handle.id.version
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for key, sig in bundle.signatures.items():
      sig_map.signature_def[key].CopyFrom(sig.proto)
  response.metadata[SIGNATURE_DEF_FIELD].Pack(sig_map)
  return response
