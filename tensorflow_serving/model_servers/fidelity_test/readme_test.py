"""The documentation's examples are tests: each runs and prints what it says.

The snippets are read from README.md and every docs/*.md page themselves
(fenced blocks), so the pages and this test cannot drift apart:

1. the `export_example_models` block exports the example models;
2. the server is started with the page's own command line (its flags, among
   them --allow_version_labels_for_unavailable_models, without which the
   model config file's labels abort start-up), and each config file that
   command names is the page's config block of that kind ("Model config
   file", the Prometheus MonitoringConfig), written as typed;
3. every `sh` block with a `curl` runs command by command in bash: a command
   followed by a comment holding JSON must print that JSON (compared as
   JSON, floats as floats); a `curl` without one must answer JSON without
   an "error";
4. every `python` block runs statement by statement: `print(...)  # text`
   must print `text`, `expression  # literal` must evaluate to `literal`.

Only ports and /tmp are rewritten (free ports, the test's temp dir). The
pages run in the order the README links them (README first), each top to
bottom, so a block may use what an earlier block of its page defined.

A second test checks the links between the pages: every relative link
points at a file that exists and, with a `#fragment`, at a heading of it;
every docs/*.md page is linked from the README.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import glob
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tokenize

from absl.testing import absltest

from tensorflow_serving.model_servers.fidelity_test import fidelity
from tensorflow_serving.model_servers.test_util import binaries
from tensorflow_serving.model_servers.test_util import model_server

_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_SERVER_BIN = (
    "bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server"
)
# The server's config-file flags the examples use, and the text that marks
# the one config block (a fence with no language) each reads.
_CONFIG_BLOCKS = {
    "--model_config_file": "model_config_list {",
    "--monitoring_config_file": "prometheus_config {",
}


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@dataclasses.dataclass
class Block:
  lang: str
  text: str
  line: int  # 1-based line of the opening fence in its page
  page: str = "README.md"  # relative to the repository root


def docs_root() -> str:
  """The directory holding README.md and docs/ (runfiles, else the tree)."""
  root = binaries.runfiles_root()
  if root:
    path = os.path.join(root, binaries.WORKSPACE_NAME)
    if os.path.exists(os.path.join(path, "README.md")):
      return path
  return binaries.repo_root()


def read_page(page: str) -> str:
  with open(os.path.join(docs_root(), page), encoding="utf-8") as f:
    return f.read()


def relative_links(text: str) -> list[str]:
  """Link targets of a page that are not URLs (no scheme)."""
  return [
      target
      for target in _LINK.findall(text)
      if not re.match(r"^[a-z][a-z0-9+.-]*:", target)
  ]


def pages() -> list[str]:
  """README.md, then the docs pages in the order it links them, then the rest."""
  linked = []
  for target in relative_links(read_page("README.md")):
    page = target.split("#", 1)[0]
    if page.startswith("docs/") and page.endswith(".md"):
      if page not in linked:
        linked.append(page)
  found = sorted(
      os.path.relpath(path, docs_root())
      for path in glob.glob(os.path.join(docs_root(), "docs", "*.md"))
  )
  return ["README.md"] + linked + [p for p in found if p not in linked]


def heading_anchors(text: str) -> set[str]:
  """The anchors GitHub gives a page's headings (outside fenced blocks)."""
  anchors, fenced = set(), False
  for line in text.splitlines():
    if _FENCE.match(line):
      fenced = not fenced
      continue
    m = re.match(r"^#{1,6} (.*)$", line)
    if m and not fenced:
      title = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
      anchors.add(title.replace(" ", "-"))
  return anchors


def fenced_blocks(text: str, page: str = "README.md") -> list[Block]:
  """Fenced code blocks (also indented ones, dedented), in page order."""
  blocks, lines, i = [], text.splitlines(), 0
  while i < len(lines):
    m = _FENCE.match(lines[i])
    if not m:
      i += 1
      continue
    indent, lang, start = m.group(1), m.group(2), i
    body = []
    i += 1
    while i < len(lines) and lines[i].strip() != "```":
      line = lines[i]
      body.append(line[len(indent) :] if line.startswith(indent) else line)
      i += 1
    blocks.append(Block(lang, "\n".join(body) + "\n", start + 1, page))
    i += 1
  return blocks


def _complete(command: str) -> bool:
  stripped = command.rstrip()
  if stripped.endswith(("\\", "|", "&&")):
    return False
  try:
    shlex.split(command, comments=True)
  except ValueError:  # An open quote: the command goes on.
    return False
  return True


def shell_commands(text: str) -> list[tuple[str, object | None]]:
  """(command, expected JSON or None) for each command of an sh block."""
  commands: list[tuple[str, object | None]] = []
  pending = ""
  for line in text.splitlines():
    if not pending and line.lstrip().startswith("#"):
      comment = line.lstrip()[1:].strip()
      try:
        expected = json.loads(comment)
      except ValueError:
        continue  # Prose.
      if commands and commands[-1][1] is None:
        commands[-1] = (commands[-1][0], expected)
      continue
    if not pending and not line.strip():
      continue
    pending += line + "\n"
    if _complete(pending):
      commands.append((pending.strip(), None))
      pending = ""
  if pending:
    raise ValueError(f"unterminated command: {pending}")
  return commands


class ReadmeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.pages = pages()
    cls.blocks = [
        block for page in cls.pages
        for block in fenced_blocks(read_page(page), page)
    ]  # fmt: skip
    cls.tmp = binaries.test_tmpdir()
    cls.grpc_port = binaries.pick_unused_port()
    cls.rest_port = binaries.pick_unused_port()
    cls._export_models()
    cls._start_server()

  @classmethod
  def rewrite(cls, text: str) -> str:
    text = text.replace("localhost:8501", f"localhost:{cls.rest_port}")
    text = text.replace("localhost:8500", f"localhost:{cls.grpc_port}")
    text = text.replace("--port=8500", f"--port={cls.grpc_port}")
    text = text.replace(
        "--rest_api_port=8501", f"--rest_api_port={cls.rest_port}"
    )
    return re.sub(r"(?<![\w./])/tmp/", cls.tmp + "/", text)

  @classmethod
  def _block_with(cls, needle: str, lang: str | None = None) -> Block:
    found = [
        b
        for b in cls.blocks
        if needle in b.text and (lang is None or b.lang == lang)
    ]
    if len(found) != 1:
      raise AssertionError(f"want one block with {needle!r}: {found}")
    return found[0]

  @classmethod
  def _export_models(cls):
    block = cls._block_with("export_example_models", "sh")
    (command,) = [c for c, _ in shell_commands(block.text)]
    args = shlex.split(cls.rewrite(command))
    prefix = [
        "bazel",
        "run",
        "//tensorflow_serving/example:export_example_models",
        "--",
    ]
    if args[: len(prefix)] != prefix:
      raise AssertionError(f"unexpected export command: {command}")
    argv = (
        binaries.binary_command(
            "tensorflow_serving/example",
            "export_example_models",
            "tensorflow_serving.example.export_example_models",
        )
        + args[len(prefix) :]
    )
    subprocess.run(argv, check=True, env=binaries.subprocess_env())

  @classmethod
  def _start_server(cls):
    config = cls._block_with("model_config_list {", "")
    serve = cls._block_with("--model_config_file=/tmp/models.config", "sh")
    if serve.page != config.page:
      raise AssertionError(
          f"the config file ({config.page}) and the command that serves it"
          f" ({serve.page}) belong on one page"
      )
    (command,) = [
        c for c, _ in shell_commands(serve.text) if c.startswith(_SERVER_BIN)
    ]
    args = shlex.split(cls.rewrite(command))
    written = set()
    for arg in args[1:]:
      flag, _, path = arg.partition("=")
      if flag in _CONFIG_BLOCKS:
        block = cls._block_with(_CONFIG_BLOCKS[flag], "")
        with open(path, "w", encoding="utf-8") as f:
          f.write(cls.rewrite(block.text))
        written.add(flag)
    if written != set(_CONFIG_BLOCKS):
      raise AssertionError(f"the command reads {written}: {command}")
    argv = model_server.server_command(args[1:])
    log_path = os.path.join(cls.tmp, "server.log")
    with open(log_path, "wb") as log:
      proc = subprocess.Popen(
          argv, stdout=log, stderr=subprocess.STDOUT,
          env=binaries.subprocess_env(),
      )  # fmt: skip
    cls.server = model_server.ModelServer(
        proc, cls.grpc_port, cls.rest_port, log_path
    )
    cls.addClassCleanup(cls.server.stop)
    cls.server.wait_until_serving(120)
    # Every model and version the examples use must be loaded first.
    for name, versions in (("half", 2), ("mnist", 1)):
      fidelity.util.wait_for(
          lambda n=name, k=versions: sum(
              s.state == fidelity.util.ModelVersionStatus.AVAILABLE
              for s in cls.server.model_status(n).model_version_status
          )
          >= k,
          timeout_s=60,
          what=f"{name} loaded",
      )

  def test_examples_in_reading_order(self):
    """Runs the blocks in the order a reader meets them."""
    shell = [b for b in self.blocks if b.lang == "sh" and "curl " in b.text]
    python = [b for b in self.blocks if b.lang == "python"]
    self.assertGreaterEqual(len(shell), 2)
    self.assertGreaterEqual(len(python), 2)
    # The pages that hold examples today; a page moved or renamed must
    # still be read.
    for page in ("README.md", "docs/rest_api.md", "docs/grpc_api.md"):
      self.assertIn(page, {b.page for b in shell + python})
    namespace: dict = {"__name__": "readme"}
    order = {page: i for i, page in enumerate(self.pages)}
    for block in sorted(shell + python, key=lambda b: (order[b.page], b.line)):
      if block.lang == "sh":
        self._run_shell_block(block)
      else:
        self._run_python_block(block, namespace)

  def _run_shell_block(self, block: Block) -> None:
    for command, expected in shell_commands(block.text):
      with self.subTest(line=block.line, command=command):
        done = subprocess.run(
            ["bash", "-c", self.rewrite(command)],
            capture_output=True, text=True, timeout=60, cwd=self.tmp,
        )  # fmt: skip
        print(f"{block.page}:{block.line}: {command}")
        print(f"  -> {done.stdout.strip()}")
        self.assertEqual(done.returncode, 0, msg=done.stderr)
        if expected is not None:
          self.assertTrue(
              fidelity.same_json(json.loads(done.stdout), expected),
              msg=f"prints {done.stdout.strip()}, {block.page} says {expected}",
          )
        elif command.startswith("curl"):
          doc = json.loads(done.stdout)
          self.assertNotIn("error", doc, msg=done.stdout)

  def _run_python_block(self, block: Block, namespace: dict) -> None:
    source = self.rewrite(block.text)
    comments = {
        tok.start[0]: tok.string[1:].strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    for node in ast.parse(source).body:
      code = ast.get_source_segment(source, node)
      comment = comments.get(node.end_lineno)
      with self.subTest(
          page=block.page, line=block.line + node.lineno, code=code
      ):
        self._run_statement(node, code, comment, namespace, block.page)

  def _run_statement(self, node, code, comment, namespace, page):
    is_print = (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "print"
    )
    if comment is None or not isinstance(node, ast.Expr):
      exec(compile(ast.Module([node], []), page, "exec"), namespace)  # pylint: disable=exec-used
      return
    if is_print:
      out = io.StringIO()
      with contextlib.redirect_stdout(out):
        exec(compile(ast.Module([node], []), page, "exec"), namespace)  # pylint: disable=exec-used
      printed = out.getvalue().rstrip("\n")
      sys.stdout.write(f"{page}: {code}\n  -> {printed}\n")
      self.assertEqual(printed, comment)
      return
    value = eval(compile(ast.Expression(node.value), page, "eval"), namespace)  # pylint: disable=eval-used
    sys.stdout.write(f"{page}: {code}\n  -> {value!r}\n")
    self.assertTrue(
        fidelity.same_json(value, ast.literal_eval(comment)),
        msg=f"evaluates to {value!r}, the page says {comment}",
    )


class LinksTest(absltest.TestCase):
  """Every task is one link from the README, and no link points nowhere."""

  def test_every_page_linked_from_readme(self):
    readme = {
        target.split("#", 1)[0]
        for target in relative_links(read_page("README.md"))
    }
    for page in pages()[1:]:
      with self.subTest(page=page):
        self.assertIn(page, readme)

  def test_links_resolve(self):
    checked = 0
    for page in pages():
      for target in relative_links(read_page(page)):
        path, _, fragment = target.partition("#")
        linked = (
            os.path.normpath(os.path.join(os.path.dirname(page), path))
            if path
            else page
        )
        with self.subTest(page=page, link=target):
          self.assertTrue(
              os.path.exists(os.path.join(docs_root(), linked)),
              msg=f"{page} links to {linked}, which does not exist",
          )
          if fragment and linked.endswith(".md"):
            self.assertIn(fragment, heading_anchors(read_page(linked)))
          checked += 1
    self.assertGreater(checked, 10)

  def test_heading_anchors(self):
    """The anchors are GitHub's, so the links work where people read them."""
    text = "# Top\n## Where a request's CPU goes\n### `GET /v1/status`\n"
    self.assertEqual(
        heading_anchors(text),
        {"top", "where-a-requests-cpu-goes", "get-v1status"},
    )


if __name__ == "__main__":
  absltest.main()
