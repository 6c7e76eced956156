"""The container recipe: the Dockerfile read statically, its entrypoint run.

No container runtime can run here. The Dockerfile is checked for upstream's
image conventions, for a build context that holds what it copies, and for
pins that fix every package the image installs. The entrypoint script is run
as the container would run it: with a recording stand-in for the server, the
exact command line it builds (defaults, the image's ENV, a Pod's env and
args); then with this repo's server as `tensorflow_model_server`, serving an
exported model on free ports given as appended flags, and stopping cleanly on
SIGTERM sent to the script's PID (the container's PID 1).

Not proven here: that `docker build` succeeds (it needs a daemon and the
network), that the base image's pip resolves the same wheels.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import stat
import sys
import tomllib
import urllib.request

from absl.testing import absltest
from packaging import requirements as pkg_requirements

from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import s3_server
from tensorflow_serving.tools.deploy_test import recipes

UPSTREAM_ARGV = [
    "--port=8500",
    "--rest_api_port=8501",
    "--model_name=model",
    "--model_base_path=/models/model",
]


def _dockerfile() -> list[recipes.Instruction]:
  return recipes.parse_dockerfile(recipes.read(recipes.DOCKERFILE))


def _final_stage() -> list[recipes.Instruction]:
  return recipes.stages(_dockerfile())[-1]


def _ignore_regex(pattern: str) -> re.Pattern[str]:
  """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex."""
  out = ""
  i = 0
  while i < len(pattern):
    if pattern.startswith("**/", i):
      out += "(?:.*/)?"
      i += 3
    elif pattern.startswith("**", i):
      out += ".*"
      i += 2
    elif pattern[i] == "*":
      out += "[^/]*"
      i += 1
    elif pattern[i] == "?":
      out += "[^/]"
      i += 1
    else:
      out += re.escape(pattern[i])
      i += 1
  return re.compile(out)


def _ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
  """Docker's rule: the last pattern matching the path or a parent wins."""
  parts = relative.split("/")
  prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
  ignored = False
  for exclude, regex in rules:
    if any(regex.fullmatch(prefix) for prefix in prefixes):
      ignored = exclude
  return ignored


def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
  rules = []
  for line in recipes.read(recipes.DOCKERIGNORE).splitlines():
    line = line.strip()
    if line and not line.startswith("#"):
      include = line.startswith("!")
      rules.append((not include, _ignore_regex(line.lstrip("!").strip("/"))))
  return rules


class DockerfileTest(absltest.TestCase):

  def test_debian_python_base_at_the_pins_python(self):
    instructions = _dockerfile()
    args = {
        i.arguments.split("=", 1)[0]: i.arguments.split("=", 1)[1]
        for i in instructions
        if i.keyword == "ARG" and "=" in i.arguments
    }
    # The pins are tested with this interpreter (the project's .venv).
    self.assertEqual(
        args["PYTHON_VERSION"],
        f"{sys.version_info.major}.{sys.version_info.minor}",
    )
    bases = [i.arguments for i in instructions if i.keyword == "FROM"]
    self.assertLen(bases, 2)
    self.assertEqual(
        bases[0], "python:${PYTHON_VERSION}-slim-bookworm AS wheel"
    )
    self.assertEqual(bases[1], "python:${PYTHON_VERSION}-slim-bookworm")

  def test_upstream_image_conventions(self):
    final = _final_stage()
    exposed = {
        port
        for i in final
        if i.keyword == "EXPOSE"
        for port in i.arguments.split()
    }
    self.assertEqual(exposed, {"8500", "8501"})
    env = recipes.env_values(final)
    self.assertEqual(env["MODEL_NAME"], "model")
    self.assertEqual(env["MODEL_BASE_PATH"], "/models")
    runs = [i.arguments for i in final if i.keyword == "RUN"]
    self.assertIn("mkdir -p ${MODEL_BASE_PATH}", runs)
    self.assertIn(f"chmod 0755 {recipes.IMAGE_ENTRYPOINT}", runs)
    (entrypoint,) = [i for i in final if i.keyword == "ENTRYPOINT"]
    self.assertEqual(entrypoint.exec_form(), [recipes.IMAGE_ENTRYPOINT])
    # No CMD: `docker run IMAGE --flag` appends --flag to the server's flags.
    self.assertNotIn("CMD", [i.keyword for i in final])
    copies = [
        i.arguments.split()
        for i in final
        if i.keyword == "COPY" and not i.flags
    ]
    self.assertIn([recipes.ENTRYPOINT_SCRIPT, recipes.IMAGE_ENTRYPOINT], copies)
    mode = os.stat(recipes.path(recipes.ENTRYPOINT_SCRIPT)).st_mode
    self.assertTrue(mode & stat.S_IXUSR, "entrypoint script not executable")

  def test_built_at_image_build_time_from_pins(self):
    instructions = _dockerfile()
    keywords = {i.keyword for i in instructions}
    self.assertNotIn("ADD", keywords)  # no downloads but pip's
    for i in instructions:
      self.assertNotRegex(i.arguments, r"\b(curl|wget|apt-get|bazel)\b", i)
    wheel, final = recipes.stages(instructions)
    (build,) = [i.arguments for i in wheel if i.keyword == "RUN"]
    self.assertIn(
        "pip install --no-cache-dir --constraint requirements.txt hatchling",
        build,
    )
    self.assertIn(
        "pip wheel --no-cache-dir --no-deps --no-build-isolation", build
    )
    # The serving stage gets wheels only, never the source tree.
    sources = [i.arguments.split()[0] for i in final if i.keyword == "COPY"]
    self.assertEqual(
        sources,
        [
            "requirements.txt",
            "requirements-nodeps.txt",
            "/wheels",
            recipes.ENTRYPOINT_SCRIPT,
        ],
    )
    self.assertEqual(
        [i.flags for i in final if i.keyword == "COPY"],
        [{}, {}, {"from": "wheel"}, {}],
    )
    installs = [
        i.arguments
        for i in final
        if i.keyword == "RUN" and "pip" in i.arguments
    ]
    self.assertEqual(
        installs,
        [
            "pip install --no-cache-dir --constraint /tmp/requirements.txt "
            "/tmp/wheels/*.whl && pip check && pip install --no-cache-dir "
            "--no-deps -r /tmp/requirements-nodeps.txt && rm -rf /tmp/wheels "
            "/tmp/requirements.txt /tmp/requirements-nodeps.txt"
        ],
    )

  def test_build_context_holds_what_the_dockerfile_copies(self):
    rules = _ignore_rules()
    for i in _dockerfile():
      if i.keyword != "COPY" or i.flags:
        continue
      for source in i.arguments.split()[:-1]:
        self.assertTrue(os.path.exists(recipes.path(source)), source)
        self.assertFalse(_ignored(source, rules), source)
    # The Python package's files reach the wheel stage ...
    for kept in (
        "tensorflow_serving/model_servers/main.py",
        "tensorflow_serving/tools/pip_package/build_config.py",
    ):
      self.assertFalse(_ignored(kept, rules), kept)
    # ... and nothing heavy or machine-specific does.
    for dropped in (
        ".venv/bin/python",
        ".data/mnist/train-images-idx3-ubyte.gz",
        "bazel-bin/tensorflow_serving/model_servers/build_config.py",
        ".git/HEAD",
        "tensorflow_serving/core/__pycache__/loader.cpython-311.pyc",
    ):
      self.assertTrue(_ignored(dropped, rules), dropped)

  def test_requirements_pin_everything_the_image_installs(self):
    """What `pip install --constraint` resolves in either stage is pinned,
    and the pins satisfy each other (the image's `pip check`), judged from
    the metadata of the .venv, which holds exactly these pins."""
    pins = recipes.requirement_pins()
    pyproject = tomllib.loads(recipes.read("pyproject.toml"))
    roots = [
        *pyproject["project"]["dependencies"],
        *(r.split("==")[0] for r in pyproject["build-system"]["requires"]),
    ]
    seen: set[str] = set()
    todo = [pkg_requirements.Requirement(r) for r in roots]
    while todo:
      requirement = todo.pop()
      name = recipes.normalize(requirement.name)
      self.assertTrue(name in pins, f"{requirement} is not pinned")
      self.assertTrue(
          requirement.specifier.contains(pins[name], prereleases=True),
          f"pin {name}=={pins[name]} breaks {requirement}",
      )
      if name in seen:
        continue
      seen.add(name)
      dist = importlib.metadata.distribution(name)
      self.assertEqual(dist.version, pins[name], f"{name} in .venv")
      for text in dist.requires or []:
        child = pkg_requirements.Requirement(text)
        extras = requirement.extras or {""}
        if child.marker is None or any(
            child.marker.evaluate({"extra": extra}) for extra in extras
        ):
          todo.append(child)
    self.assertContainsSubset({"tensorflow", "hatchling", "keras"}, seen)


class EntrypointTest(absltest.TestCase):

  def test_command_line_with_nothing_set(self):
    recorded = recipes.record_entrypoint({}, [], binaries.test_tmpdir())
    self.assertEqual(recorded.argv, UPSTREAM_ARGV)
    self.assertTrue(recorded.exec_replaced_script)

  def test_command_line_under_the_image_env(self):
    env = recipes.env_values(_final_stage())
    recorded = recipes.record_entrypoint(env, [], binaries.test_tmpdir())
    self.assertEqual(recorded.argv, UPSTREAM_ARGV)

  def test_env_and_appended_flags(self):
    recorded = recipes.record_entrypoint(
        {"MODEL_NAME": "mnist", "MODEL_BASE_PATH": "/srv/my models"},
        ["--enable_batching", "--monitoring_config_file=/etc/a b.txt"],
        binaries.test_tmpdir(),
    )
    self.assertEqual(
        recorded.argv,
        [
            "--port=8500",
            "--rest_api_port=8501",
            "--model_name=mnist",
            "--model_base_path=/srv/my models/mnist",
            "--enable_batching",
            "--monitoring_config_file=/etc/a b.txt",
        ],
    )

  def test_serves_an_exported_model_and_stops_on_sigterm(self):
    work = binaries.test_tmpdir()
    models = os.path.join(work, "models")
    half_plus_two.export_versions(os.path.join(models, "half"), [1])
    grpc_port = binaries.pick_unused_port()
    rest_port = binaries.pick_unused_port()
    server = recipes.start_entrypoint(
        {"MODEL_NAME": "half", "MODEL_BASE_PATH": models},
        # Appended flags come last, so they move the ports off 8500/8501.
        [f"--port={grpc_port}", f"--rest_api_port={rest_port}"],
        work,
        grpc_port,
        rest_port,
    )
    try:
      server.wait_until_serving()
      request = urllib.request.Request(
          f"{server.rest_url}/v1/models/half:predict",
          data=json.dumps({"instances": [1.0, 2.0, 5.0]}).encode(),
      )
      with urllib.request.urlopen(request, timeout=30) as response:
        self.assertEqual(json.load(response), {"predictions": [2.5, 3.0, 4.5]})
      status = server.model_status("half")
      self.assertEqual(
          [(v.version, v.state) for v in status.model_version_status],
          [(1, status.model_version_status[0].AVAILABLE)],
      )
    finally:
      returncode = server.stop()
    log = server.log()
    self.assertIn(f"Running gRPC ModelServer at 0.0.0.0:{grpc_port}", log)
    self.assertIn(f"Exporting HTTP/REST API at:localhost:{rest_port}", log)
    self.assertNotIn("unknown argument", log)
    # SIGTERM went to the script's PID: with `exec` that is the server, which
    # drains and exits 0 (a shell in between would not pass it on).
    self.assertIn("Model server stopped.", log)
    self.assertEqual(returncode, 0, log)


def _s3_example_env() -> dict[str, str]:
  """The `-e NAME=VALUE` pairs of the Dockerfile's S3 `docker run` example."""
  text = recipes.read(recipes.DOCKERFILE)
  example = text[text.index("# Serve s3://") :]
  example = example[: example.index("\n#\n")]
  return dict(
      pair.split("=", 1) for pair in re.findall(r"-e (\S+=\S+)", example)
  )


class S3ExampleTest(absltest.TestCase):

  def test_serves_from_an_s3_server_with_keys_from_a_credentials_file(self):
    env = _s3_example_env()
    self.assertEqual(
        sorted(env),
        [
            "AWS_REGION",
            "AWS_SHARED_CREDENTIALS_FILE",
            "MODEL_BASE_PATH",
            "MODEL_NAME",
            "S3_ENDPOINT",
            "S3_USE_HTTPS",
        ],
    )
    work = binaries.test_tmpdir()
    export = os.path.join(work, "export")
    half_plus_two.export_versions(export, [1])
    # IAM enforced: only the keys in the credentials file are accepted.
    with s3_server.S3Server(work, auth=True) as store:
      bucket = env["MODEL_BASE_PATH"].removeprefix("s3://")
      store.client().create_bucket(Bucket=bucket)
      store.upload_tree(
          os.path.join(export, "1"), bucket, f"{env['MODEL_NAME']}/1"
      )
      keys = store.env()
      credentials = os.path.join(work, "aws_credentials")
      with open(credentials, "w", encoding="utf-8") as f:
        f.write(
            "[default]\n"
            f"aws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n"
        )
      # The secret's mount point and the store's address, made local.
      env["AWS_SHARED_CREDENTIALS_FILE"] = credentials
      env["S3_ENDPOINT"] = f"127.0.0.1:{store.port}"
      grpc_port = binaries.pick_unused_port()
      rest_port = binaries.pick_unused_port()
      server = recipes.start_entrypoint(
          env,
          [
              f"--port={grpc_port}",
              f"--rest_api_port={rest_port}",
              f"--model_cache_dir={os.path.join(work, 'cache')}",
          ],
          work,
          grpc_port,
          rest_port,
      )
      try:
        server.wait_until_serving()
        request = urllib.request.Request(
            f"{server.rest_url}/v1/models/{env['MODEL_NAME']}:predict",
            data=json.dumps({"instances": [1.0, 2.0]}).encode(),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
          self.assertEqual(json.load(response), {"predictions": [2.5, 3.0]})
      finally:
        returncode = server.stop()
    self.assertEqual(returncode, 0, server.log())


if __name__ == "__main__":
  absltest.main()
