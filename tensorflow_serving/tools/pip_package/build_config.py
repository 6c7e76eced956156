"""Build configuration of the pip package, reported by `--version`.

The wheel ships this file as tensorflow_serving/model_servers/build_config.py,
the module that Bazel's `build_config_gen` genrule writes for its builds, so
`tensorflow_model_server --version` says `(build: cpu, pip)`.
"""

BUILD_DEVICE = "cpu"
COMPILATION_MODE = "pip"
