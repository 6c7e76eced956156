"""Runs every v2 conformance case against the real server; writes the table.

Each row's answer must be the one the protocol calls for, and the page the
rows render must be the committed docs/v2_conformance.md. The table also
goes to the test's undeclared outputs (v2_conformance.md).
"""

from __future__ import annotations

import os

from absl.testing import absltest
import grpc
from tritonclient.grpc import service_pb2
from tritonclient.grpc import service_pb2_grpc

from tensorflow_serving.model_servers.api_test import api_test_util as util
from tensorflow_serving.model_servers.api_test import test_models
from tensorflow_serving.model_servers.api_test import (
    v2_conformance as conformance,
)
from tensorflow_serving.model_servers.test_util import binaries

PLACEHOLDER = "$EXTRA_BASE_PATH"


class V2ConformanceTest(util.ApiTestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.repo = cls.class_repo()
    models = {
        conformance.HALF: cls.repo.base_path(
            conformance.HALF, test_models.HALF
        ),
        conformance.STRINGS: cls.repo.base_path(
            conformance.STRINGS, test_models.STRINGS
        ),
        conformance.DTYPES: cls.repo.base_path(
            conformance.DTYPES, test_models.DTYPES
        ),
    }
    cls.extra_path = cls.repo.base_path(conformance.EXTRA, test_models.HALF)
    config_path = cls.repo.write(
        "models.config", test_models.model_config_text(models)
    )
    cls.server = cls.class_server(
        cls.repo,
        [f"--model_config_file={config_path}", "--enable_model_control_api"],
    )
    cls.channel = grpc.insecure_channel(cls.server.grpc_address)
    cls.addClassCleanup(cls.channel.close)
    cls.stub = service_pb2_grpc.GRPCInferenceServiceStub(cls.channel)

  def answer(self, case: conformance.Case) -> str:
    request = case.request
    if isinstance(request, conformance.Rest):
      body = request.body.replace(
          PLACEHOLDER.encode(), self.extra_path.encode()
      )
      response = util.http_request(
          self.server,
          request.method,
          request.path,
          body or None,
          headers=dict(request.headers),
      )
      headers = {k.lower(): v for k, v in response.headers.items()}
      return conformance.summarize_rest(response.status, headers, response.body)
    message = request.build(service_pb2)
    if request.method == "RepositoryModelLoad":
      param = message.parameters["config"]
      param.string_param = param.string_param.replace(
          PLACEHOLDER, self.extra_path
      )
    try:
      response = getattr(self.stub, request.method)(message, timeout=120)
    except grpc.RpcError as exc:
      return exc.code().name
    return conformance.summarize_grpc(request.method, response)

  def test_every_request_form(self):
    rows = []
    for i, case in enumerate(conformance.cases(), 1):
      ours = self.answer(case)
      rows.append((case, ours))
      with self.subTest(row=i, form=case.form):
        self.assertEqual(ours, case.expected)
    page = conformance.render(rows)
    outputs = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR")
    if outputs:
      with open(
          os.path.join(outputs, "v2_conformance.md"), "w", encoding="utf-8"
      ) as f:
        f.write(page)
    with open(
        os.path.join(binaries.repo_root(), conformance.DOC_PATH),
        encoding="utf-8",
    ) as f:
      self.assertEqual(f.read(), page)


if __name__ == "__main__":
  absltest.main()
