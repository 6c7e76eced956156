"""Regress for the servers: resolve the ModelSpec, then run on the servable."""

from __future__ import annotations

from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.model_servers import servable_for_request
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.servables.tensorflow import regressor


def regress(
    core: server_core_lib.ServerCore,
    request: regression_pb2.RegressionRequest,
) -> regression_pb2.RegressionResponse:
  response = regression_pb2.RegressionResponse()
  with servable_for_request.servable_for_request(
      core, request, response
  ) as servable:
    regressor.run_regress(servable, request, response)
  return response
