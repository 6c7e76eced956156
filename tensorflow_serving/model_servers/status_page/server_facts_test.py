"""Server facts: changed flags shown safely, TLS reduced to yes/no."""

import dataclasses

from absl import flags
from absl.testing import absltest

from tensorflow_serving.model_servers.status_page import server_facts


def _flag_values(argv):
  """Flags as main.py defines them (a few of each kind), parsed from argv."""
  fv = flags.FlagValues()
  flags.DEFINE_bool("enable_status_page", True, "", flag_values=fv)
  flags.DEFINE_integer("port", 8500, "", flag_values=fv)
  flags.DEFINE_integer("rest_api_port", 0, "", flag_values=fv)
  flags.DEFINE_bool("enable_batching", False, "", flag_values=fv)
  flags.DEFINE_float("per_process_gpu_memory_fraction", 0.0, "", flag_values=fv)
  flags.DEFINE_string("model_name", "default", "", flag_values=fv)
  flags.DEFINE_string("model_base_path", "", "", flag_values=fv)
  flags.DEFINE_string("ssl_config_file", "", "", flag_values=fv)
  flags.DEFINE_string("model_config_file", "", "", flag_values=fv)
  flags.DEFINE_string("grpc_socket_path", "", "", flag_values=fv)
  flags.DEFINE_string("some_future_flag", "", "", flag_values=fv)
  flags.DEFINE_enum(
      "aspired_version_policy",
      "availability_preserving",
      ["availability_preserving", "resource_preserving"],
      "",
      flag_values=fv,
  )
  fv(["server", *argv])
  return fv


@dataclasses.dataclass
class _Http:
  prometheus_path: str | None = None


@dataclasses.dataclass
class _Options:
  rest_api_port: int = 0
  ssl_server_key: str | None = None
  ssl_server_cert: str | None = None
  ssl_client_verify: bool = False
  http: _Http = dataclasses.field(default_factory=_Http)


class ServerFactsTest(absltest.TestCase):

  def test_only_changed_flags_and_no_paths_or_secrets(self):
    fv = _flag_values(
        [
            "--port=9000",
            "--rest_api_port=8501",
            "--enable_batching",
            "--per_process_gpu_memory_fraction=0.5",
            "--model_name=mnist",
            "--model_base_path=/models/mnist",
            "--ssl_config_file=/etc/secret/ssl.txt",
            "--model_config_file=/etc/models.config",
            "--grpc_socket_path=/run/tfs.sock",
            "--some_future_flag=anything",
            "--aspired_version_policy=resource_preserving",
        ]
    )
    shown = server_facts.changed_flags(fv)
    self.assertEqual(
        shown,
        {
            "aspired_version_policy": "resource_preserving",
            "enable_batching": True,
            "grpc_socket_path": "(set)",
            "model_base_path": "/models/mnist",
            "model_config_file": "(set)",
            "model_name": "mnist",
            "per_process_gpu_memory_fraction": 0.5,
            "port": 9000,
            "rest_api_port": 8501,
            "some_future_flag": "(set)",
            "ssl_config_file": "(set)",
        },
    )
    self.assertNotIn("/etc", repr(shown))

  def test_defaults_show_nothing(self):
    self.assertEqual(server_facts.changed_flags(_flag_values([])), {})

  def test_a_flag_set_to_its_default_is_not_shown(self):
    self.assertEqual(
        server_facts.changed_flags(_flag_values(["--port=8500"])), {}
    )

  def test_tls_is_yes_or_no(self):
    options = _Options(
        rest_api_port=8501,
        ssl_server_key="-----BEGIN PRIVATE KEY----- secret",
        ssl_server_cert="-----BEGIN CERTIFICATE----- cert",
        ssl_client_verify=True,
        http=_Http("/monitoring/prometheus/metrics"),
    )
    facts = server_facts.from_flags(
        _flag_values(["--ssl_config_file=/etc/secret/ssl.txt"]),
        options,
        workers=3,
        started_at_s=1000.0,
    )
    doc = facts.to_json(now_s=1090.5)
    self.assertEqual(doc["grpc_tls"], {"enabled": True, "client_verify": True})
    self.assertEqual(doc["uptime_s"], 90.5)
    self.assertEqual(doc["started_at"], 1000.0)
    self.assertEqual(doc["workers"], 3)
    self.assertEqual(doc["rest_api_port"], 8501)
    self.assertEqual(doc["prometheus_path"], "/monitoring/prometheus/metrics")
    self.assertEqual(doc["flags"], {"ssl_config_file": "(set)"})
    for secret in ("PRIVATE", "CERTIFICATE", "/etc"):
      self.assertNotIn(secret, repr(doc))
    self.assertEqual(set(doc["build"]), {"device", "compilation_mode"})
    self.assertTrue(doc["version"].endswith("-py"))

  def test_without_tls(self):
    doc = server_facts.from_flags(_flag_values([]), _Options()).to_json(0.0)
    self.assertEqual(
        doc["grpc_tls"], {"enabled": False, "client_verify": False}
    )
    self.assertEqual(doc["workers"], 1)

  def test_flags_of_other_modules_are_not_shown(self):
    fv = flags.FlagValues()
    flags.DEFINE_integer("unrelated", 1, "", flag_values=fv)
    fv(["server", "--unrelated=2"])
    self.assertEqual(server_facts.changed_flags(fv), {})


if __name__ == "__main__":
  absltest.main()
