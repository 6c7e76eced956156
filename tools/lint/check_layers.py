"""Checks the import graph has no upward edge between the tree's layers.

From the bottom up:

    util  <  resources  <  core  <  servables, sources, batching
          <  model_servers  <  tools

A module may import its own layer and those below it, never one above: the
lifecycle core stays free of TensorFlow and transports, the servables of the
server, the server of its benchmarks. `resources/` (estimates and the
tracker that admits loads) sits under `core/`, whose managers consult it, as
upstream's BasicManager does. `example/` and `test_util/` sit beside the
layers and may import anything. Only tests (a `*_test.py` file, or a file
under a `test_util/` or `*_test/` folder), tools, `example/` and
`test_util/` may import a `test_util` package, so no fixture ships in the
product.

Reads the source with `ast` (nothing is imported), so it runs in well under
a second. Exits 1 and lists each offending import with its line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
import os
import sys

PACKAGE = "tensorflow_serving"

# Top-level folder of the package -> its layer's rank (higher is above).
LAYERS: dict[str, int] = {
    "util": 0,
    "resources": 1,
    "core": 2,
    "servables": 3,
    "sources": 3,
    "batching": 3,
    "model_servers": 4,
    "tools": 5,
}
# Beside the layers: may import anything.
UNLAYERED = frozenset({"example", "test_util"})
# Come from the tensorflow-serving-api wheel; not this tree's code.
EXTERNAL = frozenset({"apis", "config"})

_ORDER = " < ".join(
    "/".join(n for n, r in LAYERS.items() if r == rank)
    for rank in sorted(set(LAYERS.values()))
)


def _module_parts(path: str, root: str) -> list[str]:
  relative = os.path.relpath(path, root)
  parts = relative[: -len(".py")].split(os.sep)
  if parts[-1] == "__init__":
    parts.pop()
  return parts


def is_test_code(parts: list[str]) -> bool:
  """A test, or a helper only tests and tools use."""
  if parts and parts[-1].endswith("_test"):
    return True
  return any(p == "test_util" or p.endswith("_test") for p in parts[:-1])


def _imported(tree: ast.AST, parts: list[str]) -> Iterator[tuple[int, str]]:
  """(line, dotted name) of each import, `from a import b` giving `a.b`."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        # Relative: resolved against this module's package.
        package = parts[: len(parts) - node.level]
        base = ".".join([*package, *([node.module] if node.module else [])])
      else:
        base = node.module or ""
      for alias in node.names:
        yield node.lineno, f"{base}.{alias.name}" if base else alias.name


def check_file(path: str, root: str) -> list[str]:
  """Problems in one file of the package rooted at `root`/tensorflow_serving."""
  parts = _module_parts(path, root)
  if len(parts) < 2 or parts[0] != PACKAGE:
    return []
  own = parts[1]
  own_rank = LAYERS.get(own)
  test_code = is_test_code(parts)
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  problems = []
  for line, name in _imported(tree, parts):
    target = name.split(".")
    if target[0] != PACKAGE or len(target) < 2 or target[1] in EXTERNAL:
      continue
    where = f"{os.path.relpath(path, root)}:{line}"
    product = not test_code and own not in UNLAYERED and own != "tools"
    if "test_util" in target[1:] and product:
      problems.append(
          f"{where}: product code imports test helper {name} "
          "(only tests, tools, example/ and test_util/ may)"
      )
      continue
    if own_rank is None or own in UNLAYERED:
      continue
    target_rank = LAYERS.get(target[1])
    if target_rank is not None and target_rank > own_rank:
      problems.append(
          f"{where}: {own}/ imports {name}, from a higher layer " f"({_ORDER})"
      )
  return problems


def check(root: str) -> list[str]:
  problems = []
  for directory, folders, files in os.walk(os.path.join(root, PACKAGE)):
    folders[:] = sorted(f for f in folders if not f.startswith((".", "bazel-")))
    for name in sorted(files):
      if name.endswith(".py"):
        problems.extend(check_file(os.path.join(directory, name), root))
  return problems


def main(argv: list[str]) -> int:
  root = argv[1] if len(argv) > 1 else os.getcwd()
  problems = check(root)
  for problem in problems:
    print(problem, file=sys.stderr)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
