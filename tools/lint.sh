#!/usr/bin/env bash
# Style gate run by tools/test.sh (so CI fails on a violation): pyink in
# Google's style (pyproject.toml), ruff's lint rules, the import-style check
# (tools/lint/check_imports.py), the layer check (tools/lint/check_layers.py,
# with its self-test showing it fails on an upward import) and mypy over the
# servable contract.
# `tools/lint.sh --fix` rewrites what the tools can fix.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
if [ "${1:-}" = "--fix" ]; then
  "$BIN/ruff" check --fix -q .
  "$BIN/pyink" -q tensorflow_serving tools
  exit 0
fi
"$BIN/pyink" --check -q tensorflow_serving tools || {
  echo "lint: formatting differs from pyink's; run tools/lint.sh --fix" >&2
  exit 1
}
"$BIN/ruff" check -q . || { echo "lint: ruff found problems" >&2; exit 1; }
"$BIN/python" tools/lint/check_imports.py || {
  echo "lint: import names, not modules (see tools/lint/check_imports.py)" >&2
  exit 1
}
"$BIN/python" tools/lint/check_layers.py || {
  echo "lint: an import reaches up a layer (see tools/lint/check_layers.py)" >&2
  exit 1
}
layers_test=$("$BIN/python" tools/lint/check_layers_test.py 2>&1) || {
  echo "$layers_test" >&2
  echo "lint: check_layers' self-test failed (tools/lint/check_layers_test.py)" >&2
  exit 1
}
"$BIN/mypy" --no-error-summary || {
  echo "lint: mypy found the servable contract broken" >&2
  exit 1
}
echo "lint: clean"
