"""Build macros for this repository's Python targets (upstream: serving.bzl).

Every library needs the top-level package (which merges this tree with the
tensorflow-serving-api wheel's modules) and every test the same Python
version and size defaults; these macros say it once.
"""

def serving_py_library(name, srcs = [], deps = [], **kwargs):
    """A py_library that also depends on //tensorflow_serving."""
    native.py_library(
        name = name,
        srcs = srcs,
        deps = _with_root(deps),
        **kwargs
    )

def serving_py_test(name, srcs = None, deps = [], size = "small", **kwargs):
    """A PY3 py_test (srcs default to <name>.py) on //tensorflow_serving."""
    native.py_test(
        name = name,
        srcs = srcs or [name + ".py"],
        deps = _with_root(deps),
        size = size,
        python_version = "PY3",
        **kwargs
    )

def _with_root(deps):
    root = "//tensorflow_serving"
    if root in deps:
        return deps
    return deps + [root]
