"""What the deployment recipe tests share: the recipe files, a Dockerfile
reader, and the image's entrypoint script run outside a container.

No container runtime runs here, so the tests run the entrypoint script itself:
once with a stand-in `tensorflow_model_server` that records the exact command
line the script builds, and once with the real server behind that name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
import json
import os
import re
import shlex
import stat
import subprocess

from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server

DOCKER_DIR = "tensorflow_serving/tools/docker"
DOCKERFILE = DOCKER_DIR + "/Dockerfile"
DOCKERIGNORE = DOCKER_DIR + "/Dockerfile.dockerignore"
ENTRYPOINT_SCRIPT = DOCKER_DIR + "/tf_serving_entrypoint.sh"
# Where the Dockerfile installs the script (upstream's path).
IMAGE_ENTRYPOINT = "/usr/bin/tf_serving_entrypoint.sh"
KUBERNETES_DIR = "tensorflow_serving/tools/kubernetes"
# The server binary's name on PATH in the image and in the pip package.
SERVER_COMMAND = "tensorflow_model_server"


def source_root() -> str:
  """The tree the tests read: their runfiles under Bazel, else the checkout.

  Runfiles keep `bazel test` hermetic: a recipe file that a test reads must
  be in its `data`, so a change to it reruns the test.
  """
  root = binaries.runfiles_root()
  if root:
    return os.path.join(root, binaries.WORKSPACE_NAME)
  return binaries.repo_root()


def path(relative: str) -> str:
  return os.path.join(source_root(), relative)


def read(relative: str) -> str:
  with open(path(relative), encoding="utf-8") as f:
    return f.read()


def requirement_pins() -> dict[str, str]:
  """requirements.txt as {normalized name: version}."""
  pins = {}
  for line in read("requirements.txt").splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      name, version = line.split("==")
      pins[normalize(name)] = version.strip()
  return pins


def normalize(name: str) -> str:
  """A distribution name as PEP 503 compares them."""
  return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Instruction:
  """One Dockerfile instruction, continuation lines joined."""

  keyword: str  # upper case: FROM, RUN, COPY, ...
  flags: dict[str, str]  # leading --name=value options (COPY --from=...)
  arguments: str  # the rest, whitespace-collapsed
  line: int

  def exec_form(self) -> list[str] | None:
    """The JSON array of ENTRYPOINT/CMD/RUN, or None for the shell form."""
    if self.arguments.startswith("["):
      return json.loads(self.arguments)
    return None


def parse_dockerfile(text: str) -> list[Instruction]:
  """Docker's line rules: `\\` continues a line, `#` lines are comments
  (also between continuation lines), the keyword is case-insensitive."""
  instructions = []
  pending: list[str] = []
  start = 0
  for number, raw in enumerate(text.splitlines(), 1):
    stripped = raw.strip()
    if not stripped or stripped.startswith("#"):
      continue
    if not pending:
      start = number
    if stripped.endswith("\\"):
      pending.append(stripped[:-1])
      continue
    pending.append(stripped)
    words = " ".join(pending).split()
    pending = []
    keyword, rest = words[0].upper(), words[1:]
    flags = {}
    while rest and rest[0].startswith("--") and keyword != "RUN":
      name, _, value = rest.pop(0)[2:].partition("=")
      flags[name] = value
    instructions.append(Instruction(keyword, flags, " ".join(rest), start))
  if pending:
    raise ValueError("Dockerfile ends inside a continued line")
  return instructions


def stages(instructions: Sequence[Instruction]) -> list[list[Instruction]]:
  """The build stages, each starting with its FROM."""
  result: list[list[Instruction]] = []
  for instruction in instructions:
    if instruction.keyword == "FROM":
      result.append([])
    elif not result:
      if instruction.keyword != "ARG":
        raise ValueError(f"{instruction.keyword} before the first FROM")
      continue
    result[-1].append(instruction)
  return result


def env_values(instructions: Sequence[Instruction]) -> dict[str, str]:
  """ENV settings, in both the `k=v k2=v2` and the legacy `k v` forms."""
  env = {}
  for instruction in instructions:
    if instruction.keyword != "ENV":
      continue
    words = shlex.split(instruction.arguments)
    if "=" in words[0]:
      env.update(word.split("=", 1) for word in words)
    else:
      env[words[0]] = " ".join(words[1:])
  return env


_RECORDER = """#!/bin/sh
# Stand-in for tensorflow_model_server: records its PID and argv.
echo "$$" > "$RECORD.pid"
: > "$RECORD.argv"
if [ "$#" -gt 0 ]; then printf '%s\\0' "$@" > "$RECORD.argv"; fi
"""


def _write_executable(file_path: str, text: str) -> None:
  with open(file_path, "w", encoding="utf-8") as f:
    f.write(text)
  os.chmod(file_path, os.stat(file_path).st_mode | stat.S_IXUSR)


@dataclasses.dataclass(frozen=True)
class Recorded:
  argv: list[str]  # what the script passed to tensorflow_model_server
  exec_replaced_script: bool  # the server ran in the script's own process


def record_entrypoint(
    env: Mapping[str, str], args: Sequence[str], work_dir: str
) -> Recorded:
  """Runs the entrypoint script as a container would, under `env` alone
  (plus PATH), with a recording stand-in for the server."""
  bin_dir = os.path.join(work_dir, "recorder_bin")
  os.makedirs(bin_dir, exist_ok=True)
  _write_executable(os.path.join(bin_dir, SERVER_COMMAND), _RECORDER)
  record = os.path.join(work_dir, "record")
  proc = subprocess.Popen(
      [path(ENTRYPOINT_SCRIPT), *args],
      env={
          "PATH": (
              bin_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")
          ),
          "RECORD": record,
          **env,
      },
  )
  if proc.wait(30) != 0:
    raise RuntimeError(f"entrypoint exited with {proc.returncode}")
  with open(record + ".pid", encoding="utf-8") as f:
    pid = int(f.read())
  with open(record + ".argv", "rb") as f:
    argv = [arg.decode() for arg in f.read().split(b"\0")[:-1]]
  return Recorded(argv, pid == proc.pid)


def start_entrypoint(
    env: Mapping[str, str],
    args: Sequence[str],
    work_dir: str,
    grpc_port: int,
    rest_port: int,
) -> model_server.ModelServer:
  """Runs the entrypoint script with this repo's server as
  `tensorflow_model_server` on PATH; `args` should move the ports to
  `grpc_port` and `rest_port` (appended flags override the script's)."""
  bin_dir = os.path.join(work_dir, "server_bin")
  os.makedirs(bin_dir, exist_ok=True)
  server = shlex.join(model_server.server_command([]))
  _write_executable(
      os.path.join(bin_dir, SERVER_COMMAND),
      f'#!/bin/sh\nexec {server} "$@"\n',
  )
  child_env = binaries.subprocess_env()
  child_env.update(env)
  child_env["PATH"] = bin_dir + os.pathsep + child_env.get("PATH", "")
  log_path = os.path.join(work_dir, f"entrypoint_{grpc_port}.log")
  with open(log_path, "wb") as log:
    proc = subprocess.Popen(
        [path(ENTRYPOINT_SCRIPT), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env,
    )
  return model_server.ModelServer(proc, grpc_port, rest_port, log_path)
