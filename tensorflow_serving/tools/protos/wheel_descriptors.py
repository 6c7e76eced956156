"""The .proto files of TensorFlow Serving's APIs, as the pinned wheels hold them.

Every `_pb2` module that tensorflow-serving-api ships under
`tensorflow_serving.apis` and `tensorflow_serving.config` is imported, and the
FileDescriptorProtos of those files and of everything they import (TensorFlow's
`tensorflow/core/...` and `xla/tsl/...` protos) are collected from the
modules' descriptors. These are exactly the definitions the server and the
Python clients run with, so sources rendered from them cannot drift from it.
"""

from __future__ import annotations

from collections.abc import Iterator
import dataclasses
import importlib
import importlib.metadata
import pkgutil
import sys
import types

from google.protobuf import descriptor as descriptor_lib
from google.protobuf import descriptor_pb2

# The packages whose modules are the APIs; the rest follows from imports.
API_PACKAGES = ("tensorflow_serving.apis", "tensorflow_serving.config")
# Well-known types: every protoc and every protobuf runtime ships its own, and
# Go, Java and C# map them to their runtimes' classes, so they are not written.
WELL_KNOWN_PREFIX = "google/protobuf/"


@dataclasses.dataclass(frozen=True)
class ProtoFile:
  proto: descriptor_pb2.FileDescriptorProto
  module: str  # The _pb2 module that holds the descriptor.
  distribution: str  # The wheel that ships that module, e.g. "tensorflow".
  version: str

  @property
  def name(self) -> str:
    return self.proto.name


def api_modules() -> list[types.ModuleType]:
  """Every _pb2 module of the tensorflow-serving-api wheel, imported."""
  modules = []
  for package_name in API_PACKAGES:
    package = importlib.import_module(package_name)
    for info in sorted(pkgutil.iter_modules(package.__path__)):
      if info.name.endswith("_pb2"):
        modules.append(importlib.import_module(f"{package_name}.{info.name}"))
  return modules


def _closure(
    roots: list[descriptor_lib.FileDescriptor],
) -> Iterator[descriptor_lib.FileDescriptor]:
  """Files and their imports, each once, imports before importers."""
  seen: set[str] = set()

  def visit(file):
    if file.name in seen:
      return
    seen.add(file.name)
    for dep in file.dependencies:
      yield from visit(dep)
    yield file

  for root in roots:
    yield from visit(root)


def _modules_by_file() -> dict[str, types.ModuleType]:
  """Loaded _pb2 modules by the name of the .proto file they hold."""
  out = {}
  for module in list(sys.modules.values()):
    file = getattr(module, "DESCRIPTOR", None)
    name = getattr(module, "__name__", "")
    if name.endswith("_pb2") and isinstance(
        file, descriptor_lib.FileDescriptor
    ):
      out.setdefault(file.name, module)
  return out


def _distribution(module: types.ModuleType) -> tuple[str, str]:
  top_level = module.__name__.split(".", 1)[0]
  names = importlib.metadata.packages_distributions().get(top_level, [])
  if not names:
    raise LookupError(f"no installed distribution provides {module.__name__}")
  name = names[0]
  return name, importlib.metadata.version(name)


def collect(include_well_known: bool = False) -> list[ProtoFile]:
  """The API files and their imports, imports first."""
  roots = [module.DESCRIPTOR for module in api_modules()]
  modules = _modules_by_file()
  out = []
  for file in _closure(roots):
    if file.name.startswith(WELL_KNOWN_PREFIX) and not include_well_known:
      continue
    module = modules.get(file.name)
    if module is None:
      raise LookupError(f"no loaded _pb2 module holds {file.name}")
    distribution, version = _distribution(module)
    out.append(
        ProtoFile(
            proto=descriptor_pb2.FileDescriptorProto.FromString(
                file.serialized_pb
            ),
            module=module.__name__,
            distribution=distribution,
            version=version,
        )
    )
  return out


def all_file_protos() -> list[descriptor_pb2.FileDescriptorProto]:
  """Every file `collect` writes plus the well-known types they import."""
  return [f.proto for f in collect(include_well_known=True)]
