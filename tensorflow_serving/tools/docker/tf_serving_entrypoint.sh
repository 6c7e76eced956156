#!/bin/bash
# Entrypoint of the image built from this directory's Dockerfile, with
# upstream's conventions: gRPC on 8500, REST on 8501, the model
# ${MODEL_BASE_PATH}/${MODEL_NAME}, and the container's arguments appended
# (`docker run IMAGE --enable_batching`, a Pod's `args`). Appended flags come
# last, so they also override these (`--rest_api_port=8080`).
#
# `exec` makes the server the container's PID 1, so `docker stop` and the
# kubelet's SIGTERM reach it and it drains in-flight requests before exiting.
exec tensorflow_model_server --port=8500 --rest_api_port=8501 \
  "--model_name=${MODEL_NAME:-model}" \
  "--model_base_path=${MODEL_BASE_PATH:-/models}/${MODEL_NAME:-model}" \
  "$@"
