"""S3Store: upstream's environment variables, error classes, listing."""

from __future__ import annotations

import os
from unittest import mock

from absl.testing import absltest
from botocore import exceptions as botocore_exceptions

from tensorflow_serving.sources.storage_path.storage import s3_store
from tensorflow_serving.test_util import s3_server


class EndpointTest(absltest.TestCase):

  def test_endpoint_from_upstream_variables(self):
    self.assertIsNone(s3_store.endpoint_url({}))
    self.assertEqual(
        s3_store.endpoint_url({"S3_ENDPOINT": "minio:9000"}),
        "https://minio:9000",
    )
    self.assertEqual(
        s3_store.endpoint_url(
            {"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}
        ),
        "http://minio:9000",
    )
    self.assertEqual(
        s3_store.endpoint_url(
            {"S3_ENDPOINT": "http://minio:9000", "S3_USE_HTTPS": "1"}
        ),
        "http://minio:9000",
    )


class TransientTest(absltest.TestCase):

  def client_error(self, code: str, http: int):
    return botocore_exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": http},
        },
        "GetObject",
    )

  def test_retried_only_when_retrying_can_help(self):
    store = s3_store.S3Store(1.0)
    transient = [
        self.client_error("SlowDown", 503),
        self.client_error("InternalError", 500),
        botocore_exceptions.ReadTimeoutError(endpoint_url="http://x"),
        botocore_exceptions.EndpointConnectionError(endpoint_url="http://x"),
        botocore_exceptions.IncompleteReadError(
            actual_bytes=1, expected_bytes=2
        ),
    ]
    final = [
        self.client_error("NoSuchKey", 404),
        self.client_error("AccessDenied", 403),
        self.client_error("NoSuchBucket", 404),
    ]
    for error in transient:
      self.assertTrue(store.is_transient(error), repr(error))
    for error in final:
      self.assertFalse(store.is_transient(error), repr(error))


class AgainstAnS3ServerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.server = s3_server.S3Server(self.create_tempdir().full_path)
    self.server.start()
    self.addCleanup(self.server.stop)
    client = self.server.client()
    client.create_bucket(Bucket="bkt")
    client.put_object(Bucket="bkt", Key="m/1/saved_model.pb", Body=b"abc")
    client.put_object(Bucket="bkt", Key="m/10/saved_model.pb", Body=b"de")

  def test_upstream_variables(self):
    with mock.patch.dict(os.environ, self.server.env()):
      store = s3_store.S3Store(5.0)
      listed = [(o.key, o.size) for o in store.list_objects("bkt", "m/1/")]
      data = b"".join(store.read_object("bkt", "m/10/saved_model.pb"))
    self.assertEqual(listed, [("m/1/saved_model.pb", 3)])
    self.assertEqual(data, b"de")

  def test_boto3_endpoint_variable(self):
    env = self.server.env()
    del env["S3_ENDPOINT"]
    env["AWS_ENDPOINT_URL"] = self.server.endpoint
    # boto3 reads its own variables from the process environment.
    with mock.patch.dict(os.environ, env):
      store = s3_store.S3Store(5.0)
      keys = [o.key for o in store.list_objects("bkt", "m/")]
    self.assertEqual(keys, ["m/1/saved_model.pb", "m/10/saved_model.pb"])

  def test_store_messages_pass_through(self):
    self.enter_context(mock.patch.dict(os.environ, self.server.env()))
    store = s3_store.S3Store(5.0)
    with self.assertRaisesRegex(
        botocore_exceptions.ClientError, r"\(NoSuchBucket\)"
    ):
      store.list_objects("missing-bucket", "m/")
    with self.assertRaisesRegex(
        botocore_exceptions.ClientError, r"\(NoSuchKey\)"
    ):
      b"".join(store.read_object("bkt", "m/2/saved_model.pb"))


if __name__ == "__main__":
  absltest.main()
