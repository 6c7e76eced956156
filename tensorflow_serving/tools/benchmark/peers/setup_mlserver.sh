#!/usr/bin/env bash
# Creates the venv the benchmark runs Seldon MLServer from, as MLServer's
# docs set a server up: `pip install mlserver` plus what the custom runtime
# imports (TensorFlow 2.21.0, as this project serves with), in a venv of its own so that none of it reaches this
# project's pinned stack.
#
#   tensorflow_serving/tools/benchmark/peers/setup_mlserver.sh [VENV_DIR]
#
# VENV_DIR defaults to .data/peers/mlserver (gitignored). uvloop stays at
# 0.21.0: with 0.22 and later MLServer 1.7.1's inference workers die as they
# start (SeldonIO/MLServer#2286).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
VENV=${1:-.data/peers/mlserver}
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q mlserver==1.7.1 uvloop==0.21.0 tensorflow==2.21.0
"$VENV/bin/mlserver" --version
