"""`10**400` in a REST Predict body is a 400, and the server keeps serving.

The one row of the attack table that is the REST API's, not a transport's:
it runs the real tensorflow_model_server over a small TF2 model.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile

from absl.testing import absltest
import tensorflow as tf

from tensorflow_serving.test_util import model_server


class _Affine(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
  def predict(self, x):
    return {"y": x * 3.0 + 1.0}


def _export(path: str) -> None:
  module = _Affine()
  tf.saved_model.save(
      module, path, signatures={"serving_default": module.predict}
  )


def _post(port: int, body: bytes) -> tuple[int, dict]:
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
  try:
    conn.request("POST", "/v1/models/m:predict", body=body)
    reply = conn.getresponse()
    return reply.status, json.loads(reply.read())
  finally:
    conn.close()


class BigNumberTest(absltest.TestCase):

  def test_huge_integer_is_invalid_argument(self):
    base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    _export(os.path.join(base, "1"))
    with model_server.running_server(
        ["--model_name=m", f"--model_base_path={base}"]
    ) as server:
      status, doc = _post(
          server.rest_port, b'{"instances": [%s]}' % str(10**400).encode()
      )
      self.assertEqual(status, 400, doc)
      self.assertIn("error", doc)
      status, doc = _post(server.rest_port, b'{"instances": [1.0, 2.0]}')
      self.assertEqual(status, 200)
      self.assertEqual(doc, {"predictions": [4.0, 7.0]})


if __name__ == "__main__":
  absltest.main()
