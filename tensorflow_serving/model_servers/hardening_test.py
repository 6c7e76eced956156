"""The opt-in hardening beyond upstream, against the real binary.

One server with all of it on: HTTPS on the REST port from an SSLConfig file
(the format of --ssl_config_file), a ModelService token from a file, and
the status page's security headers. requests and curl speak HTTPS to it;
HandleReloadConfigRequest and the v2 repository's load need the token while
status stays open. Where
the token comes from (file, environment) is checked without a server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import types

from absl.testing import absltest
import grpc
import requests
from tritonclient.grpc import service_pb2
from tritonclient.grpc import service_pb2_grpc

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.model_servers import server_options
from tensorflow_serving.model_servers.status_page import page
from tensorflow_serving.model_servers.status_page import routes
from tensorflow_serving.servables.tensorflow.test_util import half_plus_two
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import in_process
from tensorflow_serving.test_util import model_server

TOKEN = "s3cret-token"


def _self_signed(work: str) -> tuple[str, str, str]:
  """A localhost certificate: (key PEM, cert PEM, cert path)."""
  openssl = shutil.which("openssl")
  assert openssl, "tools/setup.sh installs openssl"
  key, cert = os.path.join(work, "server.key"), os.path.join(work, "cert.pem")
  subprocess.run(
      [
          openssl,
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-days",
          "2",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=DNS:localhost",
          "-keyout",
          key,
          "-out",
          cert,
      ],
      check=True,
      capture_output=True,
  )
  with open(key) as k, open(cert) as c:
    return k.read(), c.read(), cert


class HardeningTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    work = tempfile.mkdtemp(dir=binaries.test_tmpdir())
    cls.base = os.path.join(work, "m")
    half_plus_two.export_half_plus_two_tf1(os.path.join(cls.base, "1"))
    key, cert, cls.cert_path = _self_signed(work)
    ssl_config = os.path.join(work, "rest_ssl.pbtxt")
    with open(ssl_config, "w") as f:
      f.write(
          f"server_key: {json.dumps(key)}\nserver_cert: {json.dumps(cert)}\n"
      )
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    cls.server = model_server.start_server(
        [
            "--model_name=m",
            f"--model_base_path={cls.base}",
            f"--rest_api_ssl_config_file={ssl_config}",
            f"--model_service_token_file={token_file}",
            "--status_page_security_headers",
            "--enable_model_control_api",
        ]
    )
    cls.server.wait_until_serving()
    cls.url = f"https://localhost:{cls.server.rest_port}"

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    super().tearDownClass()

  def test_rest_over_tls_with_requests(self):
    reply = requests.post(
        f"{self.url}/v1/models/m:predict",
        json={"instances": [1.0, 2.0]},
        verify=self.cert_path,
        timeout=30,
    )
    self.assertEqual(reply.status_code, 200, reply.text)
    self.assertEqual(reply.json(), {"predictions": [2.5, 3.0]})

  def test_rest_over_tls_with_curl(self):
    curl = shutil.which("curl")
    self.assertIsNotNone(curl, "tools/setup.sh installs curl")
    out = subprocess.run(
        [curl, "-sS", "--cacert", self.cert_path, f"{self.url}/v1/models/m"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    status = json.loads(out)["model_version_status"][0]
    self.assertEqual(status["state"], "AVAILABLE")

  def test_plain_http_is_not_served_on_the_tls_port(self):
    with self.assertRaises(requests.ConnectionError):
      requests.get(
          f"http://localhost:{self.server.rest_port}/v1/models/m", timeout=10
      )
    # The port still serves HTTPS afterwards.
    reply = requests.get(
        f"{self.url}/v1/models/m", verify=self.cert_path, timeout=30
    )
    self.assertEqual(reply.status_code, 200)

  def test_status_page_security_headers(self):
    reply = requests.get(f"{self.url}/", verify=self.cert_path, timeout=30)
    self.assertEqual(reply.status_code, 200)
    policy = reply.headers["Content-Security-Policy"]
    self.assertIn("default-src 'none'", policy)
    self.assertIn("frame-ancestors 'none'", policy)
    self.assertIn("script-src 'sha256-", policy)
    self.assertEqual(reply.headers["X-Frame-Options"], "DENY")
    # The API's answers are JSON, not a page: no page headers on them.
    api = requests.get(
        f"{self.url}/v1/models/m", verify=self.cert_path, timeout=30
    )
    self.assertNotIn("X-Frame-Options", api.headers)

  def reload(self, metadata=()) -> model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name = "m"
    config.base_path = self.base
    config.model_platform = "tensorflow"
    with self.server.channel() as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      return stub.HandleReloadConfigRequest(
          request, timeout=60, metadata=metadata
      )

  def test_reload_needs_the_token(self):
    for metadata in (
        (),
        (("authorization", "Bearer wrong"),),
        (("authorization", TOKEN),),  # No scheme.
    ):
      with self.assertRaises(grpc.RpcError) as refused:
        self.reload(metadata)
      self.assertEqual(
          refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED, metadata
      )
      self.assertIn("token", refused.exception.details())
    reply = self.reload((("authorization", f"Bearer {TOKEN}"),))
    self.assertEqual(reply.status.error_code, 0)
    # Reading status needs nothing.
    with self.server.channel() as channel:
      stub = model_service_pb2_grpc.ModelServiceStub(channel)
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = "m"
      status = stub.GetModelStatus(request, timeout=30)
    self.assertLen(status.model_version_status, 1)

  def test_v2_repository_load_needs_the_token(self):
    url = f"{self.url}/v2/repository/models/m/load"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
      reply = requests.post(
          url, headers=headers, verify=self.cert_path, timeout=60
      )
      self.assertEqual(reply.status_code, 401, reply.text)
      self.assertIn("token", reply.json()["error"])
    reply = requests.post(
        url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        verify=self.cert_path,
        timeout=60,
    )
    self.assertEqual(reply.status_code, 200, reply.text)
    with self.server.channel() as channel:
      stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
      request = service_pb2.RepositoryModelLoadRequest(model_name="m")
      with self.assertRaises(grpc.RpcError) as refused:
        stub.RepositoryModelLoad(request, timeout=60)
      self.assertEqual(
          refused.exception.code(), grpc.StatusCode.UNAUTHENTICATED
      )
      stub.RepositoryModelLoad(
          request,
          timeout=60,
          metadata=(("authorization", f"Bearer {TOKEN}"),),
      )


class TokenSourceTest(absltest.TestCase):

  def flags(self, path: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(model_service_token_file=path)

  def test_off_by_default(self):
    with absltest.mock.patch.dict(os.environ, clear=False) as env:
      env.pop(server_options.MODEL_SERVICE_TOKEN_ENV, None)
      self.assertIsNone(server_options.model_service_token(self.flags()))

  def test_from_file_then_environment(self):
    path = self.create_tempfile(content=" from-file \n").full_path
    with absltest.mock.patch.dict(
        os.environ, {server_options.MODEL_SERVICE_TOKEN_ENV: "from-env"}
    ):
      self.assertEqual(
          server_options.model_service_token(self.flags(path)), "from-file"
      )
      self.assertEqual(
          server_options.model_service_token(self.flags()), "from-env"
      )

  def test_empty_or_missing_token_is_a_flag_error(self):
    empty = self.create_tempfile(content="\n").full_path
    for path in (empty, "/nonexistent/token"):
      with self.assertRaises(server_options.FlagError):
        server_options.model_service_token(self.flags(path))
    with absltest.mock.patch.dict(
        os.environ, {server_options.MODEL_SERVICE_TOKEN_ENV: " "}
    ):
      with self.assertRaises(server_options.FlagError):
        server_options.model_service_token(self.flags())


class StatusPageHeadersTest(absltest.TestCase):

  def answer(self, options: routes.StatusPageOptions, path: str):
    core = in_process.FakeCore({})
    pipeline = in_process.make_pipeline(core)
    return in_process.run(
        routes.StatusPage(pipeline, options).route("GET", path)()
    )

  def test_off_by_default_on_when_asked(self):
    status, _, content_type, headers = self.answer(
        routes.StatusPageOptions(), "/status"
    )
    self.assertEqual((status, content_type), (200, page.CONTENT_TYPE))
    self.assertEqual(headers, b"")
    lines = self.answer(routes.StatusPageOptions(security_headers=True), "/")[
        3
    ].decode("ascii")
    self.assertTrue(lines.endswith("\r\n"))
    headers = dict(line.split(": ", 1) for line in lines.split("\r\n") if line)
    self.assertEqual(headers["X-Frame-Options"], "DENY")
    self.assertEqual(
        headers["Content-Security-Policy"],
        page.content_security_policy() + "; frame-ancestors 'none'",
    )


if __name__ == "__main__":
  absltest.main()
