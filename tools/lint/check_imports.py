"""Checks the one import style: modules are imported, names are not.

Google's Python style (upstream's): `import module` or `from package import
module`; only `typing`, `collections.abc` and `__future__` may give names.
Modules are found on disk (this tree, then the venv's sys.path) without
importing them, so the check takes well under a second. Exits 1 and lists
each offending line.
"""

from __future__ import annotations

import ast
import glob
import os
import sys

_NAME_MODULES = frozenset({"typing", "collections.abc", "__future__"})


def _is_module(dotted: str, roots: list[str]) -> bool:
  relative = dotted.replace(".", os.sep)
  for root in roots:
    base = os.path.join(root, relative)
    if os.path.isdir(base) or os.path.isfile(base + ".py"):
      return True
    if glob.glob(base + ".*.so") or glob.glob(base + ".so"):
      return True
  return False


def _absolute(node: ast.ImportFrom, path: str) -> str:
  if not node.level:
    return node.module or ""
  package = os.path.dirname(path).split(os.sep)
  package = package[: len(package) - node.level + 1]
  return ".".join([*package, *([node.module] if node.module else [])])


def _optional_imports(tree: ast.AST) -> set[int]:
  """Imports guarded by `except ImportError` (optional or generated modules,
  which need not exist where the check runs)."""
  guarded = set()
  for node in ast.walk(tree):
    if not isinstance(node, ast.Try):
      continue
    if not any(
        isinstance(h.type, ast.Name) and h.type.id == "ImportError"
        for h in node.handlers
    ):
      continue
    for child in node.body:
      for inner in ast.walk(child):
        if isinstance(inner, ast.ImportFrom):
          guarded.add(id(inner))
  return guarded


def check(paths: list[str], roots: list[str]) -> list[str]:
  problems = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read(), path)
    optional = _optional_imports(tree)
    for node in ast.walk(tree):
      if not isinstance(node, ast.ImportFrom) or id(node) in optional:
        continue
      module = _absolute(node, path)
      if module in _NAME_MODULES:
        continue
      for alias in node.names:
        if not _is_module(f"{module}.{alias.name}", roots):
          problems.append(
              f"{path}:{node.lineno}: 'from {module} import {alias.name}' "
              "imports a name; import its module instead"
          )
  return problems


def main(argv: list[str]) -> int:
  top = argv[1:] or ["tensorflow_serving", "tools"]
  paths = []
  for entry in top:
    if entry.endswith(".py"):
      paths.append(entry)
      continue
    for dirpath, dirnames, filenames in os.walk(entry):
      # Installed third-party code (npm packages, a client's own venv).
      dirnames[:] = [
          d for d in dirnames if d != "node_modules" and not d.startswith(".")
      ]
      paths += [
          os.path.join(dirpath, f) for f in filenames if f.endswith(".py")
      ]
  roots = [os.getcwd()] + [p for p in sys.path if p and os.path.isdir(p)]
  problems = check(sorted(paths), roots)
  for problem in problems:
    print(problem)
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
