"""The server's config files parse as upstream's text-format protos do."""

import os
import tempfile

from absl.testing import absltest
from google.protobuf import text_format

from tensorflow_serving.util import config_protos


class ConfigProtosTest(absltest.TestCase):

  def _write(self, text: str) -> str:
    fd, path = tempfile.mkstemp(dir=os.environ.get("TEST_TMPDIR"))
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return path

  def test_batching_parameters_file(self):
    path = self._write("""
        max_batch_size { value: 32 }
        batch_timeout_micros { value: 1000 }
        max_enqueued_batches { value: 100 }
        num_batch_threads { value: 2 }
        thread_pool_name { value: "model_server_batch_threads" }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 32
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 16 }
    """)
    params = config_protos.parse_text_file(
        path, config_protos.BatchingParameters
    )
    self.assertEqual(params.max_batch_size.value, 32)
    self.assertEqual(list(params.allowed_batch_sizes), [8, 32])
    self.assertTrue(params.pad_variable_length_inputs)
    self.assertTrue(params.enable_large_batch_splitting.value)
    self.assertTrue(params.HasField("batch_timeout_micros"))
    self.assertFalse(
        config_protos.BatchingParameters().HasField("max_batch_size")
    )

  def test_monitoring_and_ssl(self):
    monitoring = config_protos.parse_text_file(
        self._write('prometheus_config { enable: true, path: "/m" }'),
        config_protos.MonitoringConfig,
    )
    self.assertTrue(monitoring.prometheus_config.enable)
    self.assertEqual(monitoring.prometheus_config.path, "/m")
    ssl = config_protos.parse_text_file(
        self._write('server_key: "k" server_cert: "c" client_verify: true'),
        config_protos.SSLConfig,
    )
    self.assertEqual(
        (ssl.server_key, ssl.server_cert, ssl.client_verify), ("k", "c", True)
    )

  def test_unknown_field_is_a_parse_error_with_location(self):
    with self.assertRaisesRegex(text_format.ParseError, r"1:\d+.*max_batch"):
      config_protos.parse_text_file(
          self._write("max_batch { value: 1 }"),
          config_protos.BatchingParameters,
      )


if __name__ == "__main__":
  absltest.main()
