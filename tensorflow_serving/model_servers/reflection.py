"""gRPC server reflection, as upstream's server offers it, in both versions.

Tools such as grpcurl, Postman and grpcui ask a server which services it has
and for their descriptors instead of needing the .proto files. Older clients
ask `grpc.reflection.v1alpha.ServerReflection`, newer ones
`grpc.reflection.v1.ServerReflection` first. grpcio-reflection implements
the former over protobuf's default descriptor pool (where every message
module this server imports registers itself); v1 is the same protocol under
a new package name, message for message and field for field, so the same
servicer answers it, and v1's descriptor is derived from the library's
v1alpha one so that v1 can be described too.

The servicer is grpcio-reflection's asyncio one: a reflection stream waits
on the event loop, never on a request thread.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
import grpc
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2

V1ALPHA = reflection.SERVICE_NAME
V1 = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _register_v1_descriptor() -> None:
  pool = descriptor_pool.Default()
  try:
    pool.FindFileByName(_V1_FILE)
    return
  except KeyError:
    pass
  proto = descriptor_pb2.FileDescriptorProto()
  reflection_pb2.DESCRIPTOR.CopyToProto(proto)
  old, new = f".{proto.package}.", ".grpc.reflection.v1."
  proto.name = _V1_FILE
  proto.package = "grpc.reflection.v1"
  proto.ClearField("options")
  for message_type in proto.message_type:
    for field in message_type.field:
      if field.type_name.startswith(old):
        field.type_name = new + field.type_name[len(old) :]
  for service in proto.service:
    for method in service.method:
      method.input_type = new + method.input_type[len(old) :]
      method.output_type = new + method.output_type[len(old) :]
  pool.Add(proto)


def add_to_server(server, service_names: Iterable[str]) -> None:
  """Serves reflection (both versions) listing `service_names` and itself."""
  _register_v1_descriptor()
  names = sorted({*service_names, V1ALPHA, V1})
  servicer = reflection.aio.ReflectionServicer(names)
  handler = grpc.stream_stream_rpc_method_handler(
      servicer.ServerReflectionInfo,
      request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
      response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
  )
  server.add_generic_rpc_handlers(
      tuple(
          grpc.method_handlers_generic_handler(
              name, {"ServerReflectionInfo": handler}
          )
          for name in (V1ALPHA, V1)
      )
  )
