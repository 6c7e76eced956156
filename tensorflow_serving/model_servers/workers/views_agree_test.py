"""--num_workers=2: every view of the served models says the same thing.

The REST listing (`GET /v1/models`), a model's status (`GET /v1/models/NAME`),
the status page's document (`GET /v1/status`) and gRPC GetModelStatus all
read one cross-worker model view, so whichever worker takes a connection
they name the same models, versions and states; and they still do after a
config reload adds a model.
"""

from __future__ import annotations

import json
import os
import urllib.request

from absl.testing import absltest
import grpc

from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import lifecycle_util
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import model_server

MODEL = lifecycle_util.MODEL
# New connections per check: each may be taken by either worker.
_CONNECTIONS = 12

# {model name: [(version, state name), ...] newest first}
View = dict[str, list[tuple[int, str]]]


def _get(port: int, path: str) -> dict:
  """A GET's JSON over a connection of its own (so any worker may take it)."""
  request = urllib.request.Request(
      f"http://127.0.0.1:{port}{path}", headers={"Connection": "close"}
  )
  with urllib.request.urlopen(request, timeout=30) as response:
    return json.loads(response.read())


def _from_status(doc: dict) -> list[tuple[int, str]]:
  return [(int(v["version"]), v["state"]) for v in doc["model_version_status"]]


class ViewsAgreeTest(absltest.TestCase):
  server: model_server.ModelServer
  base_path: str

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base_path = lifecycle_util.new_base_path()
    test_models.Publisher(cls.base_path).publish(1)
    cls.server = model_server.start_server(
        lifecycle_util.server_args(cls.base_path, "--num_workers=2"),
        log_dir=os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or None,
    )
    print(f"server log: {cls.server.log_path}")
    lifecycle_util.wait_for(
        lambda: "All 2 model server workers are serving" in cls.server.log()
        or cls.server.proc.poll() is not None,
        120,
        "both workers serving",
    )
    if cls.server.proc.poll() is not None:
      raise AssertionError(f"server exited:\n{cls.server.log()}")

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  def listing(self) -> View:
    doc = _get(self.server.rest_port, "/v1/models")
    return {m["name"]: _from_status(m) for m in doc["models"]}

  def statuses(self, names) -> View:
    return {
        name: _from_status(_get(self.server.rest_port, f"/v1/models/{name}"))
        for name in names
    }

  def status_page(self) -> View:
    doc = _get(self.server.rest_port, "/v1/status")
    self.assertEqual(doc["server"]["workers"], 2)
    return {
        m["name"]: [(v["version"], v["state"]) for v in m["versions"]]
        for m in doc["models"]
    }

  def grpc_statuses(self, names) -> View:
    view = {}
    for name in names:
      status = lifecycle_util.StatusClient(self.server.grpc_address, name)
      try:
        view[name] = [
            (v, s.state_name)
            for v, s in sorted(status.versions().items(), reverse=True)
        ]
      finally:
        status.close()
    return view

  def assert_views_agree(self, expected: View) -> None:
    names = list(expected)
    self.assertEqual(self.grpc_statuses(names), expected)
    for _ in range(_CONNECTIONS):
      self.assertEqual(self.listing(), expected)
      self.assertEqual(self.statuses(names), expected)
      self.assertEqual(self.status_page(), expected)

  def test_1_listing_status_and_page_agree(self):
    self.assert_views_agree({MODEL: [(1, "AVAILABLE")]})

  def test_2_and_still_agree_after_a_reload_adds_a_model(self):
    request = model_management_pb2.ReloadConfigRequest()
    for name in (MODEL, "m2"):
      request.config.model_config_list.config.add(
          name=name, base_path=self.base_path, model_platform="tensorflow"
      )
    with grpc.insecure_channel(self.server.grpc_address) as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      response = stub.HandleReloadConfigRequest(request, timeout=120)
    self.assertEqual(response.status.error_code, 0)
    # The reload returned once every worker serves m2.
    self.assert_views_agree(
        {MODEL: [(1, "AVAILABLE")], "m2": [(1, "AVAILABLE")]}
    )


if __name__ == "__main__":
  absltest.main()
