"""Compiles .proto sources with grpcio-tools' protoc, for round-trip tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import importlib.resources
import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

from tensorflow_serving.tools.protos import proto_source


def well_known_include_dir() -> str:
  """grpcio-tools' copy of google/protobuf/*.proto."""
  return str(importlib.resources.files("grpc_tools") / "_proto")


def compile_files(
    include_dir: str, files: Iterable[str]
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
  """name -> FileDescriptorProto of `files` and everything they import."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "set.pb")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{include_dir}",
            f"-I{well_known_include_dir()}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
      raise RuntimeError(f"protoc failed:\n{result.stderr}")
    with open(out, "rb") as f:
      descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(f.read())
  return {file.name: file for file in descriptor_set.file}


def compile_sources(
    sources: Mapping[str, str],
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
  """Writes `sources` (name -> text) to a temporary tree and compiles them."""
  with tempfile.TemporaryDirectory() as tmp:
    for name, text in sources.items():
      path = os.path.join(tmp, name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return compile_files(tmp, sorted(sources))


def _normalize_fields(fields) -> None:
  for field in fields:
    if field.json_name == proto_source.default_json_name(field.name):
      field.ClearField("json_name")


def _normalize_message(message: descriptor_pb2.DescriptorProto) -> None:
  _normalize_fields(message.field)
  _normalize_fields(message.extension)
  for nested in message.nested_type:
    _normalize_message(nested)


def normalized(
    file: descriptor_pb2.FileDescriptorProto,
) -> descriptor_pb2.FileDescriptorProto:
  """`file` without what differs only in form between protoc and _pb2 files.

  protoc's --descriptor_set_out spells out every field's json_name, while
  generated modules hold only explicit ones; a json_name equal to the default
  means the same either way. Source locations are not compared.
  """
  out = descriptor_pb2.FileDescriptorProto()
  out.CopyFrom(file)
  out.ClearField("source_code_info")
  _normalize_fields(out.extension)
  for message in out.message_type:
    _normalize_message(message)
  return out
