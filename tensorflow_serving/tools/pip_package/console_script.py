"""Entry point of the pip package's `tensorflow_model_server` console script.

The wheel ships this file as tensorflow_serving/model_servers/console_script.py.
It runs model_servers/main.py as `__main__`, as Bazel's py_binary and
`python -m tensorflow_serving.model_servers.main` do, so the console script
runs whatever main.py's `__main__` block runs and cannot drift from the binary.
"""

from __future__ import annotations

import runpy

SERVER_MODULE = "tensorflow_serving.model_servers.main"


def run() -> None:
  runpy.run_module(SERVER_MODULE, run_name="__main__", alter_sys=True)
