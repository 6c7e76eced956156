"""Config messages that the tensorflow-serving-api wheel does not ship.

`tensorflow-serving-api` provides the generated modules for the APIs and for
ModelServerConfig, but not for the server's own config files:
`--monitoring_config_file` (MonitoringConfig), `--ssl_config_file` (SSLConfig)
and `--batching_parameters_file` (BatchingParameters). Users' existing files for
these flags are text-format protos, so they must parse exactly as upstream
parses them. We declare the three messages once here, with upstream's names and
field numbers, and let protobuf's own text_format parser read them: unknown
fields, typos and bad values fail with protobuf's usual messages.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_FILE_NAME = "tf_serving_py/server_config_files.proto"
_PACKAGE = "tensorflow.serving"


def _field(
    message,
    name: str,
    number: int,
    ftype: int,
    type_name: str = "",
    repeated: bool = False,
) -> None:
  field = message.field.add(name=name, number=number, type=ftype)
  field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
  if type_name:
    field.type_name = type_name


def _build_file() -> descriptor_pb2.FileDescriptorProto:
  f = descriptor_pb2.FileDescriptorProto(
      name=_FILE_NAME,
      package=_PACKAGE,
      syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"],
  )

  prometheus = f.message_type.add(name="PrometheusConfig")
  _field(prometheus, "enable", 1, _F.TYPE_BOOL)
  _field(prometheus, "path", 2, _F.TYPE_STRING)
  monitoring = f.message_type.add(name="MonitoringConfig")
  _field(
      monitoring,
      "prometheus_config",
      1,
      _F.TYPE_MESSAGE,
      f".{_PACKAGE}.PrometheusConfig",
  )

  ssl = f.message_type.add(name="SSLConfig")
  _field(ssl, "server_key", 1, _F.TYPE_STRING)
  _field(ssl, "server_cert", 2, _F.TYPE_STRING)
  _field(ssl, "custom_ca", 3, _F.TYPE_STRING)
  _field(ssl, "client_verify", 4, _F.TYPE_BOOL)

  int64_value = ".google.protobuf.Int64Value"
  batching = f.message_type.add(name="BatchingParameters")
  _field(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, int64_value)
  _field(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64_value)
  _field(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64_value)
  _field(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, int64_value)
  _field(
      batching,
      "thread_pool_name",
      5,
      _F.TYPE_MESSAGE,
      ".google.protobuf.StringValue",
  )
  _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
  _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
  _field(
      batching,
      "enable_large_batch_splitting",
      8,
      _F.TYPE_MESSAGE,
      ".google.protobuf.BoolValue",
  )
  _field(batching, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, int64_value)
  return f


def _register():
  pool = descriptor_pool.Default()
  # The wrappers' file must be in the pool before ours refers to it.
  pool.FindFileByName(wrappers_pb2.DESCRIPTOR.name)
  try:
    file_desc = pool.FindFileByName(_FILE_NAME)
  except KeyError:
    file_desc = pool.Add(_build_file())
    if not hasattr(file_desc, "message_types_by_name"):
      file_desc = pool.FindFileByName(_FILE_NAME)
  return {
      name: message_factory.GetMessageClass(desc)
      for name, desc in file_desc.message_types_by_name.items()
  }


_CLASSES = _register()
PrometheusConfig = _CLASSES["PrometheusConfig"]
MonitoringConfig = _CLASSES["MonitoringConfig"]
SSLConfig = _CLASSES["SSLConfig"]
BatchingParameters = _CLASSES["BatchingParameters"]


def parse_text_file(path: str, message_class):
  """Parses a text-format config file into a new `message_class` message.

  Raises text_format.ParseError (with line and column) on bad content, and
  OSError when the file cannot be read.
  """
  with open(path, encoding="utf-8") as f:
    text = f.read()
  message = message_class()
  text_format.Parse(text, message)
  return message
