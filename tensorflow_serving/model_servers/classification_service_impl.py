"""Classify for the servers: resolve the ModelSpec, then run on the servable."""

from __future__ import annotations

from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.model_servers import servable_for_request
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import classifier


def classify(
    core: server_core_lib.ServerCore,
    request: classification_pb2.ClassificationRequest,
) -> classification_pb2.ClassificationResponse:
  response = classification_pb2.ClassificationResponse()
  with servable_for_request.servable_for_request(
      core, request, response
  ) as servable:
    classifier.run_classify(servable, request, response)
  return response
