#!/usr/bin/env bash
# Creates the venv the benchmark runs NVIDIA PyTriton from, as PyTriton's docs
# set it up: `pip install nvidia-pytriton` (its wheel bundles Triton's C++
# server) plus TensorFlow for the inference callable, in a venv of its own.
#
#   tensorflow_serving/tools/benchmark/peers/setup_pytriton.sh [VENV_DIR]
#
# VENV_DIR defaults to .data/peers/pytriton (gitignored). PyTriton 0.7 wants
# numpy < 2; TensorFlow 2.21.0 (the version this project serves with) takes
# numpy 1.26.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
VENV=${1:-.data/peers/pytriton}
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q nvidia-pytriton==0.7.0 tensorflow==2.21.0
"$VENV/bin/python" -c "import pytriton, tensorflow; print('pytriton ok, TF', tensorflow.__version__)"
