"""Finds and runs the project's binaries: under `bazel test`, `bazel run`,
or from a checkout with `python -m`.

Shared by the tests that drive the real binaries and by the benchmark, so
both exercise exactly the targets users run.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile

WORKSPACE_NAME = "tf_serving"


def repo_root() -> str:
  """The source tree root (holds WORKSPACE), also from inside runfiles."""
  here = os.path.dirname(os.path.realpath(__file__))
  while here != "/":
    if os.path.exists(os.path.join(here, "WORKSPACE")):
      return here
    here = os.path.dirname(here)
  raise RuntimeError("cannot find the repository root from " + __file__)


def runfiles_root() -> str | None:
  """The runfiles tree this code runs from (bazel test/run), else None.

  `bazel test` sets TEST_SRCDIR; a py_binary's launcher sets RUNFILES_DIR or
  RUNFILES_MANIFEST_FILE; failing those, this file's own (unresolved) path
  runs through `<binary>.runfiles/`.
  """
  for var in ("TEST_SRCDIR", "RUNFILES_DIR"):
    if os.environ.get(var):
      return os.environ[var]
  manifest = os.environ.get("RUNFILES_MANIFEST_FILE", "")
  if manifest.endswith(".runfiles_manifest"):
    return manifest[: -len("_manifest")]
  if manifest.endswith(os.sep + "MANIFEST"):
    return os.path.dirname(manifest)
  here = os.path.abspath(__file__)
  marker = ".runfiles" + os.sep
  if marker in here:
    return here[: here.index(marker) + len(".runfiles")]
  return None


def binary_command(package: str, name: str, module: str) -> list[str]:
  """argv prefix running //<package>:<name>, or `python -m <module>`.

  Under Bazel the binary is taken from the runfiles (the caller must list it
  in `data`); from a checkout the module runs from the source tree.
  """
  root = runfiles_root()
  if root:
    path = os.path.join(root, WORKSPACE_NAME, package, name)
    if os.path.isfile(path) and os.access(path, os.X_OK):
      return [path]
  return [sys.executable, "-m", module]


def subprocess_env() -> dict[str, str]:
  """Environment for children: the repo importable outside Bazel, TF quiet."""
  env = dict(os.environ)
  if runfiles_root() is None:
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [repo_root(), env.get("PYTHONPATH")])
    )
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return env


def pick_unused_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_tmpdir() -> str:
  base = os.environ.get("TEST_TMPDIR")
  if base:
    return tempfile.mkdtemp(dir=base)
  return tempfile.mkdtemp(prefix="tf_serving_test_")
