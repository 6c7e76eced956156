"""The pip package: built, installed into a fresh venv, serving a model.

The wheel is built from this test's runfiles (the server's modules, the
pyproject.toml and the pip_package modules) by `pip wheel` with the pinned
hatchling, as `pip wheel .` builds it from a checkout, and again from its
sdist, as `python -m build` does; both must be the same.

Offline and fast, the fresh venv takes nothing from PyPI. Its own
site-packages gets two wheels, installed by pip: ours, and the upstream
tensorflow-serving-api wheel rebuilt from the files the .venv's pip recorded
for it, so that the two share one tensorflow_serving/ directory as they do
after `pip install tf-serving-py`. Every other dependency is the .venv's,
reached through a .pth file, so at exactly the pinned versions; the test
checks those satisfy every requirement the two wheels declare (what
`pip check` reports for them; the shared .venv may hold unrelated packages).

Not proven here: that PyPI resolves `pip install tf-serving-py` to the same
set (docker_recipe_test checks the pins are complete and consistent), or
Python versions other than the .venv's.
"""

from __future__ import annotations

import ast
import base64
import email.parser
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
import zipfile

from absl.testing import absltest
import tensorflow as tf

from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers import version
from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.tools.deploy_test import recipes

DIST_NAME = "tf-serving-py"
UPSTREAM_API = "tensorflow-serving-api"
# What the wheel ships beyond the product packages' modules.
PIP_ONLY_MODULES = {
    "tensorflow_serving/model_servers/build_config.py",
    "tensorflow_serving/model_servers/console_script.py",
}
# Package data, the only files beside modules: the status page's assets.
PACKAGE_DATA = {
    f"tensorflow_serving/model_servers/status_page/assets/status.{ext}"
    for ext in ("html", "css", "js")
}
# Bazel's genrule output; the wheel ships the pip_package stand-in instead.
GENRULE_OUTPUT = "tensorflow_serving/model_servers/build_config.py"
NOT_SHIPPED = re.compile(
    r"(_test\.py|_benchmark\.py)$|/(test_util|\w+_test)/"
    r"|^tensorflow_serving/(tools|example)/|^tensorflow_serving/__init__\.py$"
)
PIP = ["-m", "pip", "--isolated", "--disable-pip-version-check"]
PIP_TIMEOUT_S = 300


def _run(argv: list[str], **kwargs) -> str:
  result = subprocess.run(
      argv,
      capture_output=True,
      text=True,
      timeout=PIP_TIMEOUT_S,
      check=False,
      **kwargs,
  )
  if result.returncode != 0:
    raise AssertionError(
        f"{argv} exited with {result.returncode}:\n{result.stdout}\n"
        f"{result.stderr}"
    )
  return result.stdout


def _stage(out: str) -> str:
  """The project as a checkout holds it, copied from the runfiles."""
  root = recipes.source_root()
  os.makedirs(out)
  for name in ("pyproject.toml", "README.md", "requirements.txt"):
    shutil.copy(os.path.join(root, name), os.path.join(out, name))

  def ignore(directory: str, names: list[str]) -> list[str]:
    relative = os.path.relpath(directory, root)
    return [
        n
        for n in names
        if n == "__pycache__" or os.path.join(relative, n) == GENRULE_OUTPUT
    ]

  shutil.copytree(
      os.path.join(root, "tensorflow_serving"),
      os.path.join(out, "tensorflow_serving"),
      ignore=ignore,
  )
  return out


def _clean_env() -> dict[str, str]:
  """A shell's environment, not Bazel's: no PYTHONPATH into the runfiles."""
  return {
      "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
      "HOME": os.environ.get("HOME", "/tmp"),
      "TF_CPP_MIN_LOG_LEVEL": "2",
  }


def _build_wheel(source: str, out: str) -> str:
  os.makedirs(out)
  _run(
      [
          sys.executable,
          *PIP,
          "wheel",
          "--no-cache-dir",
          "--no-deps",
          "--no-build-isolation",
          "--no-index",
          "--wheel-dir",
          out,
          source,
      ],
      env=_clean_env(),
      cwd=out,
  )
  (wheel,) = os.listdir(out)
  return os.path.join(out, wheel)


def _record_line(name: str, data: bytes) -> str:
  digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
  return f"{name},sha256={digest.decode()},{len(data)}"


def _rebuild_installed_wheel(dist_name: str, out: str) -> str:
  """The wheel a distribution was installed from, rebuilt from the files its
  RECORD lists (less what pip adds at install time)."""
  dist = importlib.metadata.distribution(dist_name)
  files = [
      f
      for f in dist.files or []
      if "__pycache__" not in f.parts
      and not (
          f.parts[0].endswith(".dist-info")
          and f.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
      )
  ]
  (info_dir,) = {f.parts[0] for f in files if f.parts[0].endswith(".dist-info")}
  wheel_text = dist.read_text("WHEEL") or ""
  tags = [
      line.split(": ")[1]
      for line in wheel_text.splitlines()
      if line.startswith("Tag: ")
  ]
  python_tags = ".".join(t.split("-")[0] for t in tags)
  abi_platform = "-".join(tags[0].split("-")[1:])
  name = info_dir[: -len(".dist-info")]
  path = os.path.join(out, f"{name}-{python_tags}-{abi_platform}.whl")
  records = []
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
    for f in files:
      assert ".." not in f.parts, f  # files outside site-packages
      data = f.locate().read_bytes()
      wheel.writestr(str(f), data)
      records.append(_record_line(str(f), data))
    records.append(f"{info_dir}/RECORD,,")
    wheel.writestr(f"{info_dir}/RECORD", "\n".join(records) + "\n")
  return path


class FreshVenv:
  """A venv made by `python -m venv`, its dependencies from the .venv."""

  def __init__(self, directory: str):
    self.directory = directory
    _run([sys.executable, "-m", "venv", "--without-pip", directory])
    self.python = os.path.join(directory, "bin", "python")
    self.site = self.eval(
        "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    )
    deps_site = os.path.realpath(sysconfig.get_paths()["purelib"])
    # Appended after the venv's own site-packages, .pth files included.
    with open(os.path.join(self.site, "_project_venv.pth"), "w") as f:
      f.write(f"import site; site.addsitedir({deps_site!r})\n")

  def env(self) -> dict[str, str]:
    env = _clean_env()
    env["PATH"] = os.path.join(self.directory, "bin") + os.pathsep + env["PATH"]
    return env

  def run(self, argv: list[str]) -> str:
    return _run(argv, env=self.env(), cwd=self.directory)

  def eval(self, code: str) -> str:
    return self.run([self.python, "-c", code]).strip()

  def pip(self, *args: str) -> str:
    return self.run([self.python, *PIP, *args])

  def install(self, *wheels: str) -> None:
    # --ignore-installed: into this venv even where the .venv has the same
    # distribution, and never uninstalling it there.
    self.pip(
        "install",
        "--no-cache-dir",
        "--no-deps",
        "--no-index",
        "--ignore-installed",
        *wheels,
    )


_REQUIREMENTS_CHECK = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
report = {}
for name in sys.argv[1:]:
  dist = md.distribution(name)
  problems = []
  for text in dist.requires or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
      continue
    try:
      have = md.version(req.name)
    except md.PackageNotFoundError:
      problems.append(f"{req} is not installed")
      continue
    if not req.specifier.contains(have, prereleases=True):
      problems.append(f"{req}, but {have} is installed")
  report[name] = {"site": str(dist.locate_file("")), "problems": problems}
print(json.dumps(report))
"""


def _optional_import_lines(tree: ast.Module) -> set[int]:
  """Line numbers of imports inside `try: ... except ImportError`."""
  lines = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Try) and any(
        isinstance(h.type, ast.Name)
        and h.type.id in ("ImportError", "ModuleNotFoundError")
        for h in node.handlers
    ):
      for child in node.body:
        for inner in ast.walk(child):
          if isinstance(inner, (ast.Import, ast.ImportFrom)):
            lines.add(inner.lineno)
  return lines


class PipPackageTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.work = binaries.test_tmpdir()
    cls.source = _stage(os.path.join(cls.work, "source"))
    cls.wheel = _build_wheel(cls.source, os.path.join(cls.work, "wheel"))
    cls.api_wheel = _rebuild_installed_wheel(
        UPSTREAM_API, os.path.join(cls.work)
    )
    with zipfile.ZipFile(cls.wheel) as wheel:
      cls.names = set(wheel.namelist())
      cls.sources = {
          n: wheel.read(n).decode() for n in cls.names if n.endswith(".py")
      }
      (metadata,) = [n for n in cls.names if n.endswith(".dist-info/METADATA")]
      cls.metadata = email.parser.Parser().parsestr(
          wheel.read(metadata).decode()
      )
      (entry_points,) = [
          n for n in cls.names if n.endswith(".dist-info/entry_points.txt")
      ]
      cls.entry_points = wheel.read(entry_points).decode()
    cls.venv = FreshVenv(os.path.join(cls.work, "venv"))
    cls.venv.install(cls.api_wheel, cls.wheel)

  def test_ships_product_modules_only_and_none_of_upstreams_files(self):
    modules = {n for n in self.names if ".dist-info/" not in n}
    self.assertContainsSubset(PACKAGE_DATA, modules)
    modules -= PACKAGE_DATA
    self.assertTrue(all(n.endswith(".py") for n in modules))
    self.assertEqual([n for n in modules if NOT_SHIPPED.search(n)], [])
    self.assertContainsSubset(PIP_ONLY_MODULES, modules)
    # Every product module this test's runfiles hold (the server's closure).
    product = set()
    for directory, _, files in os.walk(
        os.path.join(self.source, "tensorflow_serving")
    ):
      for name in files:
        relative = os.path.relpath(os.path.join(directory, name), self.source)
        if name.endswith(".py") and not NOT_SHIPPED.search(relative):
          product.add(relative)
    self.assertEqual(modules - PIP_ONLY_MODULES, product)
    upstream = {
        str(f)
        for f in importlib.metadata.distribution(UPSTREAM_API).files or []
        if not f.parts[0].endswith(".dist-info")
    }
    self.assertIn("tensorflow_serving/__init__.py", upstream)
    self.assertEqual(modules & upstream, set())
    build_config = self.sources[
        "tensorflow_serving/model_servers/build_config.py"
    ]
    self.assertIn('COMPILATION_MODE = "pip"', build_config)

  def test_metadata_pins_and_console_script(self):
    self.assertEqual(self.metadata["Name"], DIST_NAME)
    self.assertEqual(self.metadata["Version"], version.SERVER_VERSION)
    pins = recipes.requirement_pins()
    for requirement in self.metadata.get_all("Requires-Dist"):
      name, pinned = requirement.split("==")
      self.assertEqual(pins[recipes.normalize(name)], pinned, requirement)
    self.assertIn(
        "[console_scripts]\ntensorflow_model_server = "
        "tensorflow_serving.model_servers.console_script:run",
        self.entry_points,
    )

  def test_declares_the_distributions_it_imports(self):
    """Every import is declared; every declaration is imported, optional
    imports (in `try: ... except ImportError`) included: uvloop is one, the
    loop docs/performance.md's figures were measured on."""
    owners = importlib.metadata.packages_distributions()
    required: set[str] = set()
    optional: set[str] = set()
    internal = set()
    for name, text in self.sources.items():
      tree = ast.parse(text, name)
      optional_lines = _optional_import_lines(tree)
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          modules = [node.module or ""]
        else:
          continue
        found = optional if node.lineno in optional_lines else required
        for module in modules:
          top = module.split(".")[0]
          if top in sys.stdlib_module_names:
            continue
          if module.startswith(
              ("tensorflow_serving.apis", "tensorflow_serving.config")
          ):
            found.add(UPSTREAM_API)
          elif top == "tensorflow_serving":
            internal.add(module)
          elif top in owners:
            found.update(recipes.normalize(d) for d in owners[top])
          else:
            self.assertIs(found, optional, f"{module} is not installed")
    declared = {
        recipes.normalize(r.split("==")[0])
        for r in self.metadata.get_all("Requires-Dist")
    }
    self.assertContainsSubset(required, declared)
    self.assertContainsSubset(declared, required | optional)
    self.assertIn("uvloop", declared - required)
    # Every internal import resolves to a module or package the wheel ships.
    for module in internal:
      stem = module.replace(".", "/")
      self.assertTrue(
          f"{stem}.py" in self.names or f"{stem}/__init__.py" in self.names,
          module,
      )

  def test_sdist_builds_the_same_wheel(self):
    out = os.path.join(self.work, "sdist")
    os.makedirs(out)
    code = "import hatchling.build as b, sys; print(b.build_sdist(sys.argv[1]))"
    name = _run(
        [sys.executable, "-c", code, out], env=_clean_env(), cwd=self.source
    ).strip()
    with tarfile.open(os.path.join(out, name)) as sdist:
      sdist.extractall(out, filter="data")
    unpacked = os.path.join(out, name[: -len(".tar.gz")])
    again = _build_wheel(unpacked, os.path.join(self.work, "wheel_from_sdist"))
    with zipfile.ZipFile(self.wheel) as a, zipfile.ZipFile(again) as b:
      self.assertEqual(set(a.namelist()), set(b.namelist()))
      for member in a.namelist():
        if not member.endswith("/RECORD"):
          self.assertEqual(a.read(member), b.read(member), member)

  def test_installed_beside_tensorflow_serving_api(self):
    report = json.loads(
        self.venv.run(
            [
                self.venv.python,
                "-c",
                _REQUIREMENTS_CHECK,
                DIST_NAME,
                UPSTREAM_API,
            ]
        )
    )
    for name in (DIST_NAME, UPSTREAM_API):
      self.assertEqual(report[name]["site"], self.venv.site, name)
      self.assertEqual(report[name]["problems"], [], name)
    result = subprocess.run(
        [self.venv.python, *PIP, "check"],
        capture_output=True,
        text=True,
        env=self.venv.env(),
        check=False,
    )
    mine = [
        line
        for line in result.stdout.splitlines()
        if line.startswith((f"{DIST_NAME} ", f"{UPSTREAM_API} "))
    ]
    self.assertEqual(mine, [])
    # Every shipped module imports, from the venv's site-packages.
    modules = sorted(
        n[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for n in self.sources
    )
    code = (
        "import importlib, json, sys\n"
        "mods = sys.argv[1:] + ['tensorflow_serving', "
        "'tensorflow_serving.apis.predict_pb2']\n"
        "print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}))"
    )
    files = json.loads(self.venv.run([self.venv.python, "-c", code, *modules]))
    for module, path in files.items():
      self.assertTrue(path.startswith(self.venv.site + os.sep), (module, path))
    self.assertEqual(
        files["tensorflow_serving"],
        os.path.join(self.venv.site, "tensorflow_serving", "__init__.py"),
    )

  def test_console_script_version(self):
    script = os.path.join(self.venv.directory, "bin", "tensorflow_model_server")
    with open(script, encoding="utf-8") as f:
      # The venv's interpreter, whose imports resolve in the venv's
      # site-packages (test_installed_beside_tensorflow_serving_api): on the
      # #! line, or for a path too long for one, in pip's /bin/sh preamble.
      launcher = f.readline() + f.readline()
    python = re.escape(self.venv.python)
    self.assertRegex(
        launcher, rf"^(#!{python}\n|#!/bin/sh\n'''exec' '?{python}'? \"\$0\")"
    )
    out = self.venv.run(["tensorflow_model_server", "--version"])
    self.assertEqual(
        out.splitlines(),
        [
            f"TensorFlow ModelServer: {version.SERVER_VERSION}-py (build: cpu, pip)",
            f"TensorFlow Library: {tf.__version__}",
        ],
    )

  def test_console_script_serves_a_model(self):
    models = os.path.join(self.work, "models")
    half_plus_two.export_versions(os.path.join(models, "half"), [1])
    grpc_port = binaries.pick_unused_port()
    rest_port = binaries.pick_unused_port()
    log_path = os.path.join(self.work, "console_script.log")
    with open(log_path, "wb") as log:
      proc = subprocess.Popen(
          [
              os.path.join(
                  self.venv.directory, "bin", "tensorflow_model_server"
              ),
              f"--port={grpc_port}",
              f"--rest_api_port={rest_port}",
              "--model_name=half",
              f"--model_base_path={models}/half",
          ],
          stdout=log,
          stderr=subprocess.STDOUT,
          env=self.venv.env(),
          cwd=self.venv.directory,
      )
    server = model_server.ModelServer(proc, grpc_port, rest_port, log_path)
    try:
      server.wait_until_serving()
      request = urllib.request.Request(
          f"{server.rest_url}/v1/models/half:predict",
          data=json.dumps({"instances": [1.0, 2.0, 5.0]}).encode(),
      )
      with urllib.request.urlopen(request, timeout=30) as response:
        self.assertEqual(json.load(response), {"predictions": [2.5, 3.0, 4.5]})
      # The status page, from the wheel's package data.
      with urllib.request.urlopen(f"{server.rest_url}/", timeout=30) as page:
        self.assertIn(
            b"<title>TensorFlow ModelServer status</title>", page.read()
        )
      predict = predict_pb2.PredictRequest()
      predict.model_spec.name = "half"
      predict.inputs["x"].CopyFrom(tf.make_tensor_proto([1.0, 3.0], tf.float32))
      with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        reply = stub.Predict(predict, timeout=30)
      self.assertEqual(reply.model_spec.version.value, 1)
      self.assertEqual(tf.make_ndarray(reply.outputs["y"]).tolist(), [2.5, 3.5])
    finally:
      returncode = server.stop()
    log = server.log()
    self.assertNotIn("unknown argument", log)
    self.assertEqual(returncode, 0, log)

  def test_uninstall_leaves_tensorflow_serving_api_whole(self):
    venv = FreshVenv(os.path.join(self.work, "venv_uninstall"))
    venv.install(self.api_wheel, self.wheel)
    venv.pip("uninstall", "--yes", DIST_NAME)
    package = os.path.join(venv.site, "tensorflow_serving")
    self.assertEqual(
        sorted(n for n in os.listdir(package) if n != "__pycache__"),
        ["__init__.py", "apis", "config"],
    )
    # Every file of the upstream wheel is still there, unchanged.
    with zipfile.ZipFile(self.api_wheel) as api:
      for member in api.namelist():
        with open(os.path.join(venv.site, member), "rb") as f:
          if not member.endswith(".dist-info/RECORD"):
            self.assertEqual(f.read(), api.read(member), member)
    with self.assertRaises(AssertionError):
      venv.eval("import tensorflow_serving.model_servers")


if __name__ == "__main__":
  absltest.main()
