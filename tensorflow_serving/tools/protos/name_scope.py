"""protoc's name lookup, so rendered .proto files can use short type names.

A descriptor holds every reference fully qualified (`.tensorflow.TensorProto`).
Written that way a .proto file is correct but hard to read, so the renderer
asks this module for the shortest name that protoc resolves back to the same
symbol from the place where the reference is written. Lookup follows protoc's
rules (descriptor.cc, LookupSymbolNoPlaceholder): the first component of a
name is searched from the innermost scope outwards, a compound name continues
inside the first aggregate found, and only symbols of the file itself and of
its imports (with their `import public`s) are visible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import enum

from google.protobuf import descriptor_pb2


class Kind(enum.Enum):
  PACKAGE = "package"
  MESSAGE = "message"
  ENUM = "enum"
  ENUM_VALUE = "enum value"
  FIELD = "field"
  ONEOF = "oneof"
  SERVICE = "service"
  METHOD = "method"


_TYPES = frozenset({Kind.MESSAGE, Kind.ENUM})
_AGGREGATES = frozenset({Kind.PACKAGE, Kind.MESSAGE, Kind.ENUM, Kind.SERVICE})

# Words that change how the parser reads a statement (a label, a scalar type,
# `map<`, `group`, `stream`, a declaration keyword): a type name must not start
# with one, or `optional.Foo x = 1;` would read as label `optional`, type
# `.Foo`.
PARSER_WORDS = frozenset(
    {
        "double",
        "float",
        "int32",
        "int64",
        "uint32",
        "uint64",
        "sint32",
        "sint64",
        "fixed32",
        "fixed64",
        "sfixed32",
        "sfixed64",
        "bool",
        "string",
        "bytes",
        "optional",
        "required",
        "repeated",
        "map",
        "group",
        "stream",
        "message",
        "enum",
        "oneof",
        "extend",
        "extensions",
        "reserved",
        "option",
        "service",
        "rpc",
        "returns",
        "import",
        "package",
        "syntax",
        "edition",
    }
)


def _join(scope: str, name: str) -> str:
  return f"{scope}.{name}" if scope else name


class SymbolTable:
  """Every symbol that a set of files defines: full name -> (kind, file)."""

  def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]):
    self.files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    self._symbols: dict[str, tuple[Kind, str]] = {}
    for file in files:
      self.files[file.name] = file
      self._add_file(file)

  def entry(self, full_name: str) -> tuple[Kind, str] | None:
    """(kind, defining file) of a symbol, or None."""
    return self._symbols.get(full_name)

  def _add(self, full_name: str, kind: Kind, file_name: str) -> None:
    self._symbols.setdefault(full_name, (kind, file_name))

  def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
    if file.package:
      parts = file.package.split(".")
      for i in range(1, len(parts) + 1):
        self._add(".".join(parts[:i]), Kind.PACKAGE, file.name)
    scope = file.package
    for message in file.message_type:
      self._add_message(message, scope, file.name)
    for enum_type in file.enum_type:
      self._add_enum(enum_type, scope, file.name)
    for extension in file.extension:
      self._add(_join(scope, extension.name), Kind.FIELD, file.name)
    for service in file.service:
      service_name = _join(scope, service.name)
      self._add(service_name, Kind.SERVICE, file.name)
      for method in service.method:
        self._add(_join(service_name, method.name), Kind.METHOD, file.name)

  def _add_message(
      self, message: descriptor_pb2.DescriptorProto, scope: str, file_name: str
  ) -> None:
    name = _join(scope, message.name)
    self._add(name, Kind.MESSAGE, file_name)
    for field in list(message.field) + list(message.extension):
      self._add(_join(name, field.name), Kind.FIELD, file_name)
    for oneof in message.oneof_decl:
      self._add(_join(name, oneof.name), Kind.ONEOF, file_name)
    for nested in message.nested_type:
      self._add_message(nested, name, file_name)
    for enum_type in message.enum_type:
      self._add_enum(enum_type, name, file_name)

  def _add_enum(
      self,
      enum_type: descriptor_pb2.EnumDescriptorProto,
      scope: str,
      file_name: str,
  ) -> None:
    self._add(_join(scope, enum_type.name), Kind.ENUM, file_name)
    # Enum values are siblings of their enum (C++ scoping), not children.
    for value in enum_type.value:
      self._add(_join(scope, value.name), Kind.ENUM_VALUE, file_name)

  def view_from(self, file_name: str) -> FileScope:
    return FileScope(self, file_name)


class FileScope:
  """Lookups as protoc performs them while it compiles one file."""

  def __init__(self, table: SymbolTable, file_name: str):
    self._table = table
    self._file = table.files[file_name]
    self._visible_files = {file_name} | _imported_files(table.files, self._file)
    self._packages = [
        table.files[name].package
        for name in self._visible_files
        if name in table.files
    ]

  def _find(self, full_name: str) -> Kind | None:
    """The symbol if it is visible from this file (protoc's FindSymbol)."""
    entry = self._table.entry(full_name)
    if entry is None:
      return None
    kind, file_name = entry
    if kind is Kind.PACKAGE:
      for package in self._packages:
        if package == full_name or package.startswith(full_name + "."):
          return kind
      return None
    return kind if file_name in self._visible_files else None

  def resolve(
      self, name: str, relative_to: str, types_only: bool
  ) -> str | None:
    """The full name protoc gives `name` written inside `relative_to`."""
    if name.startswith("."):
      full = name[1:]
      return full if self._find(full) else None
    first = name.split(".", 1)[0]
    scope = relative_to
    while "." in scope:
      scope = scope.rsplit(".", 1)[0]
      candidate = f"{scope}.{first}"
      kind = self._find(candidate)
      if kind is None:
        continue
      if first != name:
        if kind in _AGGREGATES:
          rest = f"{scope}.{name}"
          return rest if self._find(rest) else None
        continue
      if types_only and kind not in _TYPES:
        continue
      return candidate
    return name if self._find(name) else None

  def shortest_name(
      self, full_name: str, relative_to: str, types_only: bool = True
  ) -> str:
    """The shortest spelling of `.full_name` that resolves back to it."""
    target = full_name.lstrip(".")
    parts = target.split(".")
    for i in range(len(parts) - 1, -1, -1):
      candidate = ".".join(parts[i:])
      if parts[i] in PARSER_WORDS:
        continue
      if self.resolve(candidate, relative_to, types_only) == target:
        return candidate
    return "." + target


def _imported_files(
    files: Mapping[str, descriptor_pb2.FileDescriptorProto],
    file: descriptor_pb2.FileDescriptorProto,
) -> set[str]:
  """Direct imports plus, transitively, what they `import public`."""
  seen: set[str] = set()
  pending = list(file.dependency)
  while pending:
    name = pending.pop()
    if name in seen:
      continue
    seen.add(name)
    dep = files.get(name)
    if dep is not None:
      pending.extend(dep.dependency[i] for i in dep.public_dependency)
  return seen
