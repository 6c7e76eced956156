"""Renders a FileDescriptorProto as .proto source that compiles back to it.

The `_pb2` modules of the tensorflow-serving-api, tensorflow and protobuf
wheels carry each .proto file as a serialized FileDescriptorProto, but not its
source. protobuf's Python package has no printer for descriptors (C++'s
`FileDescriptor::DebugString` is not exposed), so this module writes proto2 and
proto3 sources itself: messages with nested types, enums, oneofs, maps, groups
and proto3 `optional`; reserved and extension ranges; extensions; services with
streaming; and every option the descriptor holds. Compiling the output with
protoc gives the same FileDescriptorProto again (write_protos_test checks it
for every file written); a descriptor that .proto syntax cannot express raises
ValueError instead of being written approximately.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import math

from google.protobuf import descriptor_pb2
from google.protobuf import message as message_lib
from google.protobuf import text_encoding
from google.protobuf import text_format
from google.protobuf import unknown_fields

from tensorflow_serving.tools.protos import name_scope

_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_NAMES = {
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_INT32: "int32",
    _F.TYPE_FIXED64: "fixed64",
    _F.TYPE_FIXED32: "fixed32",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_SFIXED32: "sfixed32",
    _F.TYPE_SFIXED64: "sfixed64",
    _F.TYPE_SINT32: "sint32",
    _F.TYPE_SINT64: "sint64",
}
_LABELS = {
    _F.LABEL_OPTIONAL: "optional",
    _F.LABEL_REQUIRED: "required",
    _F.LABEL_REPEATED: "repeated",
}
# What `to max` stores as a range's end: exclusive for field numbers (ordinary
# messages and MessageSets), inclusive for enum values.
_MAX_FIELD_END = 1 << 29
_MAX_MESSAGE_SET_END = (1 << 31) - 1
_MAX_ENUM_VALUE = (1 << 31) - 1
_INDENT = "  "


def default_json_name(field_name: str) -> str:
  """protoc's JSON name for a field: lowerCamelCase without underscores."""
  out = []
  upper_next = False
  for char in field_name:
    if char == "_":
      upper_next = True
    elif upper_next:
      out.append(char.upper())
      upper_next = False
    else:
      out.append(char)
  return "".join(out)


def _quote(text: str | bytes) -> str:
  if isinstance(text, bytes):
    return '"' + text_encoding.CEscape(text, as_utf8=False) + '"'
  return '"' + text_encoding.CEscape(text, as_utf8=True) + '"'


def _float_text(value: float) -> str:
  if math.isnan(value):
    return "nan"
  if math.isinf(value):
    return "inf" if value > 0 else "-inf"
  return repr(value)


def _option_value(field, value) -> str:
  """One option value as .proto syntax reads it."""
  if field.type == field.TYPE_MESSAGE or field.type == field.TYPE_GROUP:
    return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"
  if field.type == field.TYPE_ENUM:
    number = field.enum_type.values_by_number.get(value)
    return number.name if number is not None else str(value)
  if field.type == field.TYPE_BOOL:
    return "true" if value else "false"
  if field.type in (field.TYPE_STRING, field.TYPE_BYTES):
    return _quote(value)
  if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
    return _float_text(value)
  return str(value)


def option_items(
    options: message_lib.Message, where: str
) -> list[tuple[str, str]]:
  """(name, value) for every option set, custom ones as `(.full.name)`."""
  if unknown_fields.UnknownFieldSet(options):
    raise ValueError(
        f"{where}: options hold fields this process cannot name (a custom"
        " option whose definition is not imported)"
    )
  items = []
  for field, value in options.ListFields():
    if field.name == "uninterpreted_option" and not field.is_extension:
      raise ValueError(f"{where}: uninterpreted options")
    name = f"(.{field.full_name})" if field.is_extension else field.name
    for one in value if field.is_repeated else [value]:
      items.append((name, _option_value(field, one)))
  return items


def _bracket(items: Sequence[tuple[str, str]]) -> str:
  if not items:
    return ""
  return " [" + ", ".join(f"{name} = {value}" for name, value in items) + "]"


def _field_range(start: int, end: int, max_end: int) -> str:
  """A field-number range (`end` exclusive) as reserved/extensions write it."""
  if end == start + 1:
    return str(start)
  return f"{start} to {'max' if end == max_end else end - 1}"


def _enum_range(start: int, end: int) -> str:
  """An enum-value range (`end` inclusive)."""
  if end == start:
    return str(start)
  return f"{start} to {'max' if end == _MAX_ENUM_VALUE else end}"


def _join(scope: str, name: str) -> str:
  return f"{scope}.{name}" if scope else name


@dataclasses.dataclass(frozen=True)
class _Scope:
  """The declarations of a file or message body."""

  name: str  # Full name: the package, or the message's.
  nested: Sequence[descriptor_pb2.DescriptorProto]
  enums: Sequence[descriptor_pb2.EnumDescriptorProto]
  fields: Sequence[descriptor_pb2.FieldDescriptorProto]
  extensions: Sequence[descriptor_pb2.FieldDescriptorProto]
  oneofs: Sequence[descriptor_pb2.OneofDescriptorProto]
  top_level: bool


def _declaration_order(
    scope: _Scope,
) -> tuple[
    list[tuple[str, int]], dict[tuple[str, int], descriptor_pb2.DescriptorProto]
]:
  """An order of ("type" | "field" | "extension", index) that protoc numbers
  back the same, and the message types that map fields and groups own.

  A map field or a group declares its message type where it stands, so that
  type takes its place among the scope's nested types from its field: each
  field is written no later than the nested types that follow its own.
  """
  by_name = {
      f".{_join(scope.name, m.name)}": i for i, m in enumerate(scope.nested)
  }
  owner: dict[int, tuple[str, int]] = {}
  for kind, fields in (
      ("field", scope.fields),
      ("extension", scope.extensions),
  ):
    for i, field in enumerate(fields):
      k = by_name.get(field.type_name)
      if k is None:
        continue
      if field.type == _F.TYPE_GROUP or (
          kind == "field"
          and field.label == _F.LABEL_REPEATED
          and scope.nested[k].options.map_entry
      ):
        owner[k] = (kind, i)
  lists = {"field": scope.fields, "extension": scope.extensions}
  owned_fields = {i for kind, i in owner.values() if kind == "field"}
  order: list[tuple[str, int]] = []
  next_index = {"field": 0, "extension": 0}

  def take_through(kind: str, last: int) -> None:
    while next_index[kind] <= last:
      order.append((kind, next_index[kind]))
      next_index[kind] += 1
    if kind != "field" or last < 0:
      return
    # The rest of a oneof comes too: nothing may split its block.
    fields = lists[kind]
    oneof = _real_oneof(fields[last])
    while (
        oneof is not None
        and next_index[kind] < len(fields)
        and _real_oneof(fields[next_index[kind]]) == oneof
        and next_index[kind] not in owned_fields
    ):
      order.append((kind, next_index[kind]))
      next_index[kind] += 1

  for k in range(len(scope.nested)):
    if k in owner:
      take_through(*owner[k])
    else:
      order.append(("type", k))
  for kind, fields in lists.items():
    take_through(kind, len(fields) - 1)
  implicit = {field: scope.nested[k] for k, field in owner.items()}
  return order, implicit


class _FileRenderer:
  """Renders one file; `scope` answers protoc's name lookups for it."""

  def __init__(
      self,
      file: descriptor_pb2.FileDescriptorProto,
      scope: name_scope.FileScope,
  ):
    self._file = file
    self._scope = scope
    self._proto3 = file.syntax == "proto3"
    self._lines: list[str] = []
    self._depth = 0

  def _emit(self, text: str = "") -> None:
    self._lines.append(_INDENT * self._depth + text if text else "")

  def _open(self, text: str) -> None:
    self._emit(text + " {")
    self._depth += 1

  def _close(self) -> None:
    self._depth -= 1
    self._emit("}")

  def _options(self, options: message_lib.Message, where: str) -> None:
    for name, value in option_items(options, where):
      self._emit(f"option {name} = {value};")

  def _type_name(self, full_name: str, relative_to: str, types_only=True):
    return self._scope.shortest_name(full_name, relative_to, types_only)

  def render(self, header: Sequence[str]) -> str:
    file = self._file
    if file.syntax not in ("", "proto2", "proto3"):
      raise ValueError(
          f"{file.name}: syntax {file.syntax!r} (editions) is not supported"
      )
    if file.option_dependency:
      raise ValueError(f"{file.name}: `import option` is not supported")
    for line in header:
      self._emit(f"// {line}" if line else "//")
    if header:
      self._emit()
    self._emit(f'syntax = "{"proto3" if self._proto3 else "proto2"}";')
    self._emit()
    if file.package:
      self._emit(f"package {file.package};")
      self._emit()
    if file.dependency:
      public = set(file.public_dependency)
      weak = set(file.weak_dependency)
      for i, dep in enumerate(file.dependency):
        kind = "public " if i in public else "weak " if i in weak else ""
        self._emit(f"import {kind}{_quote(dep)};")
      self._emit()
    if file.HasField("options"):
      self._options(file.options, file.name)
      self._emit()
    self._body(
        _Scope(
            name=file.package,
            nested=file.message_type,
            enums=file.enum_type,
            fields=(),
            extensions=file.extension,
            oneofs=(),
            top_level=True,
        )
    )
    for service in file.service:
      self._service(service)
      self._emit()
    while self._lines and not self._lines[-1]:
      self._lines.pop()
    return "\n".join(self._lines) + "\n"

  # Messages.

  def _message(self, message: descriptor_pb2.DescriptorProto, scope: str):
    if message.options.map_entry:
      raise ValueError(
          f"{_join(scope, message.name)}: a map entry type with no map field"
      )
    self._open(f"message {message.name}")
    self._message_body(message, _join(scope, message.name))
    self._close()

  def _message_body(self, message: descriptor_pb2.DescriptorProto, name: str):
    if message.HasField("options"):
      self._options(message.options, name)
    self._body(
        _Scope(
            name=name,
            nested=message.nested_type,
            enums=message.enum_type,
            fields=message.field,
            extensions=message.extension,
            oneofs=message.oneof_decl,
            top_level=False,
        )
    )
    # `max` is the largest field number: 2^29 - 1, or 2^31 - 2 in MessageSets.
    max_end = (
        _MAX_MESSAGE_SET_END
        if message.options.message_set_wire_format
        else _MAX_FIELD_END
    )
    for ext_range in message.extension_range:
      items = (
          option_items(ext_range.options, name)
          if ext_range.HasField("options")
          else []
      )
      text = _field_range(ext_range.start, ext_range.end, max_end)
      self._emit(f"extensions {text}{_bracket(items)};")
    if message.reserved_range:
      ranges = ", ".join(
          _field_range(r.start, r.end, max_end) for r in message.reserved_range
      )
      self._emit(f"reserved {ranges};")
    if message.reserved_name:
      names = ", ".join(_quote(n) for n in message.reserved_name)
      self._emit(f"reserved {names};")

  def _body(self, scope: _Scope) -> None:
    for enum_type in scope.enums:
      self._enum(enum_type, scope.name)
      if scope.top_level:
        self._emit()
    order, implicit = _declaration_order(scope)
    open_oneof: int | None = None
    open_extendee: str | None = None
    seen_oneofs: list[int] = []
    for kind, i in order:
      oneof = _real_oneof(scope.fields[i]) if kind == "field" else None
      extension = scope.extensions[i] if kind == "extension" else None
      extendee = extension.extendee if extension else None
      if open_oneof is not None and oneof != open_oneof:
        self._close()
        open_oneof = None
      if open_extendee is not None and extendee != open_extendee:
        self._close()
        open_extendee = None
        if scope.top_level:
          self._emit()
      if kind == "type":
        self._message(scope.nested[i], scope.name)
        if scope.top_level:
          self._emit()
      elif kind == "field":
        if oneof is not None and open_oneof is None:
          if seen_oneofs and oneof <= seen_oneofs[-1]:
            raise ValueError(
                f"{scope.name}: the fields of oneof"
                f" {scope.oneofs[oneof].name} are not contiguous"
            )
          seen_oneofs.append(oneof)
          self._oneof(scope.oneofs[oneof], scope.name)
          open_oneof = oneof
        self._field(
            scope.fields[i],
            scope.name,
            implicit.get((kind, i)),
            in_oneof=oneof is not None,
        )
      else:
        if open_extendee is None:
          relative_to = _join(scope.name, extension.name)
          target = self._type_name(extendee, relative_to, types_only=False)
          self._open(f"extend {target}")
          open_extendee = extendee
        self._field(extension, scope.name, implicit.get((kind, i)), False)
    if open_oneof is not None:
      self._close()
    if open_extendee is not None:
      self._close()
      if scope.top_level:
        self._emit()
    real = {
        i
        for i in range(len(scope.oneofs))
        if not _is_synthetic(i, scope.fields)
    }
    if set(seen_oneofs) != real:
      raise ValueError(
          f"{scope.name}: a oneof without fields cannot be written"
      )

  def _oneof(
      self, oneof: descriptor_pb2.OneofDescriptorProto, scope: str
  ) -> None:
    self._open(f"oneof {oneof.name}")
    if oneof.HasField("options"):
      self._options(oneof.options, _join(scope, oneof.name))

  def _field(
      self,
      field: descriptor_pb2.FieldDescriptorProto,
      scope: str,
      implicit_type: descriptor_pb2.DescriptorProto | None,
      in_oneof: bool,
  ) -> None:
    full_name = _join(scope, field.name)
    items: list[tuple[str, str]] = []
    if field.HasField("default_value"):
      items.append(("default", self._default_text(field)))
    if field.HasField("json_name") and field.json_name != default_json_name(
        field.name
    ):
      items.append(("json_name", _quote(field.json_name)))
    if field.HasField("options"):
      items.extend(option_items(field.options, full_name))
    number = field.number
    if implicit_type is not None and implicit_type.options.map_entry:
      key, value = _map_fields(implicit_type, full_name)
      entry = _join(scope, implicit_type.name)
      key_text = _SCALAR_NAMES[key.type]
      value_text = self._field_type(value, _join(entry, value.name))
      self._emit(
          f"map<{key_text}, {value_text}> {field.name} = {number}"
          f"{_bracket(items)};"
      )
      return
    label = self._label(field, in_oneof)
    if implicit_type is not None:  # A group.
      if field.name != implicit_type.name.lower():
        raise ValueError(f"{full_name}: group field not named after its type")
      self._open(
          f"{label}group {implicit_type.name} = {number}{_bracket(items)}"
      )
      self._message_body(implicit_type, _join(scope, implicit_type.name))
      self._close()
      return
    type_text = self._field_type(field, full_name)
    self._emit(f"{label}{type_text} {field.name} = {number}{_bracket(items)};")

  def _label(self, field: descriptor_pb2.FieldDescriptorProto, in_oneof: bool):
    if in_oneof:
      return ""
    if self._proto3:
      if field.label == _F.LABEL_REPEATED:
        return "repeated "
      if field.proto3_optional:
        return "optional "
      if field.label == _F.LABEL_REQUIRED:
        raise ValueError(f"{field.name}: required field in a proto3 file")
      return ""
    return _LABELS[field.label] + " "

  def _field_type(
      self, field: descriptor_pb2.FieldDescriptorProto, full_name: str
  ) -> str:
    if field.type in _SCALAR_NAMES:
      return _SCALAR_NAMES[field.type]
    return self._type_name(field.type_name, full_name)

  def _default_text(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
    value = field.default_value
    if field.type == _F.TYPE_STRING:
      return _quote(value)
    if field.type == _F.TYPE_BYTES:
      return f'"{value}"'  # The descriptor holds it C-escaped already.
    return value

  # Enums and services.

  def _enum(self, enum_type: descriptor_pb2.EnumDescriptorProto, scope: str):
    name = _join(scope, enum_type.name)
    self._open(f"enum {enum_type.name}")
    if enum_type.HasField("options"):
      self._options(enum_type.options, name)
    for value in enum_type.value:
      items = (
          option_items(value.options, _join(scope, value.name))
          if value.HasField("options")
          else []
      )
      self._emit(f"{value.name} = {value.number}{_bracket(items)};")
    if enum_type.reserved_range:
      ranges = ", ".join(
          _enum_range(r.start, r.end) for r in enum_type.reserved_range
      )
      self._emit(f"reserved {ranges};")
    if enum_type.reserved_name:
      names = ", ".join(_quote(n) for n in enum_type.reserved_name)
      self._emit(f"reserved {names};")
    self._close()

  def _service(self, service: descriptor_pb2.ServiceDescriptorProto) -> None:
    name = _join(self._file.package, service.name)
    self._open(f"service {service.name}")
    if service.HasField("options"):
      self._options(service.options, name)
    for method in service.method:
      method_name = _join(name, method.name)
      request = self._type_name(method.input_type, method_name, False)
      response = self._type_name(method.output_type, method_name, False)
      text = (
          f"rpc {method.name}("
          f"{'stream ' if method.client_streaming else ''}{request}) returns ("
          f"{'stream ' if method.server_streaming else ''}{response})"
      )
      if method.HasField("options"):
        self._open(text)
        self._options(method.options, method_name)
        self._close()
      else:
        self._emit(text + ";")
    self._close()


def _real_oneof(field: descriptor_pb2.FieldDescriptorProto) -> int | None:
  if field.HasField("oneof_index") and not field.proto3_optional:
    return field.oneof_index
  return None


def _is_synthetic(
    index: int, fields: Sequence[descriptor_pb2.FieldDescriptorProto]
) -> bool:
  return any(
      f.proto3_optional and f.HasField("oneof_index") and f.oneof_index == index
      for f in fields
  )


def _map_fields(entry: descriptor_pb2.DescriptorProto, where: str):
  by_number = {f.number: f for f in entry.field}
  key, value = by_number.get(1), by_number.get(2)
  if (
      len(entry.field) != 2
      or key is None
      or value is None
      or key.type not in _SCALAR_NAMES
  ):
    raise ValueError(f"{where}: malformed map entry {entry.name}")
  return key, value


def render_file(
    file: descriptor_pb2.FileDescriptorProto,
    table: name_scope.SymbolTable,
    header: Sequence[str] = (),
) -> str:
  """`.proto` source for `file`; `table` must hold it and what it imports."""
  return _FileRenderer(file, table.view_from(file.name)).render(header)
