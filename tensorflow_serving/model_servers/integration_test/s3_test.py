"""Serving from s3:// against a real S3 protocol server (moto, loopback).

One server run walks through what users of an object-store model repository
rely on, with client threads sending Predict(latest) throughout (each reply
names its version: y = x + version):
  * v1 is served from the bucket through the local cache;
  * a half-uploaded v2 (no variables/ yet) is not loaded; once complete it
    takes over with no failed request, and v1 leaves the cache;
  * deleting v2 rolls back to v1, again without a failed request;
  * the server's user loses its S3 access (access denied, IAM enforced),
    the store stalls (listing timeout), goes down, and comes back without
    the bucket: each fault is logged once in the store's own words, v1 keeps
    serving throughout, and once the bucket is back polling picks up v3.
"""

from __future__ import annotations

import os
import time
from unittest import mock

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.model_servers.integration_test import (
    lifecycle_util as lu,
)
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import s3_server

State = get_model_status_pb2.ModelVersionStatus.State
BUCKET = "models"
PREFIX = "prod/m"
BASE = f"s3://{BUCKET}/{PREFIX}"
TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 2


def _cached_versions(cache_root: str) -> set[str]:
  """Version directories of the model in any process cache under the root."""
  found = set()
  for entry in os.listdir(cache_root):
    model_dir = os.path.join(cache_root, entry, "s3", BUCKET, PREFIX)
    if os.path.isdir(model_dir):
      found |= set(os.listdir(model_dir))
  return found


class S3ServingTest(absltest.TestCase):

  def test_serve_roll_out_roll_back_and_faults(self):
    exports = {}
    for version in (1, 2, 3):
      exports[version] = test_models.export_versioned(
          os.path.join(binaries.test_tmpdir(), f"export-{version}"), version
      )
    cache_root = os.path.join(binaries.test_tmpdir(), "cache")
    store = s3_server.S3Server()
    store.start(auth=True)
    self.addCleanup(store.stop)
    store.client().create_bucket(Bucket=BUCKET)
    store.upload_tree(exports[1], BUCKET, f"{PREFIX}/1")
    # Inherited by the server process.
    self.enter_context(mock.patch.dict(os.environ, store.env()))

    with lu.serving(
        BASE,
        f"--model_cache_dir={cache_root}",
        f"--storage_request_timeout_seconds={REQUEST_TIMEOUT_S}",
        "--model_download_retries=1",
    ) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.ClientLoad(server.grpc_address, 2) as clients:
        lu.wait_for(lambda: clients.first_served(1), TIMEOUT_S, "v1 served")
        self.assertEqual(_cached_versions(cache_root), {"1"})

        # Roll-out: incomplete first, so it must not be aspired.
        store.upload_tree(exports[2], BUCKET, f"{PREFIX}/2", skip="variables")
        time.sleep(3 * lu.POLL_S)
        self.assertIsNone(status.state(2))
        store.upload_tree(exports[2], BUCKET, f"{PREFIX}/2")
        lu.wait_for(lambda: clients.first_served(2), TIMEOUT_S, "v2 served")
        lu.wait_for(
            lambda: status.state(1) == State.END, TIMEOUT_S, "v1 unloaded"
        )
        self.assertEqual(_cached_versions(cache_root), {"2"})

        # Roll-back: v2 disappears from the bucket, v1 comes back.
        rolled_back = time.time()
        store.delete_prefix(BUCKET, f"{PREFIX}/2/")
        lu.wait_for(
            lambda: status.state(2) == State.END, TIMEOUT_S, "v2 unloaded"
        )
        self.assertEqual(status.state(1), State.AVAILABLE)
        self.assertEqual(_cached_versions(cache_root), {"1"})
        lu.wait_for(
            lambda: any(
                r.ok and r.version == 1 and r.end > rolled_back
                for r in clients.results()
            ),
            TIMEOUT_S,
            "v1 served again",
        )

        # Access denied, then granted again.
        store.deny()
        time.sleep(3 * lu.POLL_S)
        store.allow()
        # A stalled store: listings time out.
        store.pause()
        time.sleep(3 * (REQUEST_TIMEOUT_S + lu.POLL_S))
        store.resume()
        # Down, then back empty (the bucket is missing).
        store.stop()
        time.sleep(3 * lu.POLL_S)
        store.start()
        time.sleep(3 * lu.POLL_S)
        self.assertEqual(status.state(1), State.AVAILABLE)
        # The bucket returns with a new version: polling recovers.
        store.client().create_bucket(Bucket=BUCKET)
        store.upload_tree(exports[3], BUCKET, f"{PREFIX}/3")
        lu.wait_for(lambda: clients.first_served(3), TIMEOUT_S, "v3 served")
        time.sleep(0.5)
        results = clients.stop()
      status.close()
      log = server.log()

    self.assertEqual(lu.failures(results), [], lu.summarize_failures(results))
    self.assertEqual(_cached_versions(cache_root), set())  # Removed on exit.
    for needle in (
        "Read timeout on endpoint URL",
        "Could not connect to the endpoint URL",
        "NoSuchBucket",
        "AccessDenied",
    ):
      lines = [
          line
          for line in log.splitlines()
          if needle in line and line.startswith("E")
      ]
      self.assertLen(lines, 1, f"{needle!r} logged once: {lines}")
    self.assertIn("Recovered from: ", log)

  def test_download_faults(self):
    """The network dies mid-download; a version vanishes as it is fetched."""
    exports = {}
    for version in (1, 2, 3):
      exports[version] = test_models.export_versioned(
          os.path.join(binaries.test_tmpdir(), f"dl-export-{version}"), version
      )
    store = s3_server.S3Server()
    store.start()
    self.addCleanup(store.stop)
    proxy = s3_server.FaultProxy(store.port)
    self.addCleanup(proxy.stop)
    store.client().create_bucket(Bucket=BUCKET)
    store.upload_tree(exports[1], BUCKET, f"{PREFIX}/1")
    env = store.env()
    env["S3_ENDPOINT"] = f"127.0.0.1:{proxy.port}"  # The server's path.
    self.enter_context(mock.patch.dict(os.environ, env))

    with lu.serving(
        BASE,
        f"--storage_request_timeout_seconds={REQUEST_TIMEOUT_S}",
        "--model_download_retries=1",
    ) as server:
      status = lu.StatusClient(server.grpc_address)
      with lu.ClientLoad(server.grpc_address, 2) as clients:
        lu.wait_for(lambda: clients.first_served(1), TIMEOUT_S, "v1 served")

        # Every response for v2 is cut short: one retry, then given up
        # (logged once) until the network heals; v1 serves meanwhile.
        proxy.cut_responses(f"/{PREFIX}/2/")
        store.upload_tree(exports[2], BUCKET, f"{PREFIX}/2")
        lu.wait_for(
            lambda: "Not updating the versions of servable m" in server.log(),
            TIMEOUT_S,
            "the failed v2 download to be logged",
        )
        time.sleep(3 * lu.POLL_S)  # Further failed polls: no new lines.
        self.assertIsNone(status.state(2))
        self.assertEqual(status.state(1), State.AVAILABLE)
        proxy.clear()
        lu.wait_for(lambda: clients.first_served(2), TIMEOUT_S, "v2 served")

        # v3 is deleted between its listing and its download.
        proxy.before_first(
            f"/{PREFIX}/3/",
            lambda: store.delete_prefix(BUCKET, f"{PREFIX}/3/"),
        )
        store.upload_tree(exports[3], BUCKET, f"{PREFIX}/3")
        lu.wait_for(
            lambda: "NoSuchKey" in server.log(),
            TIMEOUT_S,
            "the vanished v3 to be logged",
        )
        lu.wait_for(
            lambda: server.log().count("Recovered from: Not updating") >= 2,
            TIMEOUT_S,
            "polling to carry on without v3",
        )
        self.assertIsNone(status.state(3))
        self.assertEqual(status.state(2), State.AVAILABLE)
        time.sleep(0.5)
        results = clients.stop()
      status.close()
      log = server.log()

    self.assertEqual(lu.failures(results), [], lu.summarize_failures(results))
    errors = [
        line
        for line in log.splitlines()
        if line.startswith("E") and "Not updating the versions" in line
    ]
    self.assertLen(errors, 2, errors)  # One per fault, not one per poll.
    # The cut download was retried, in botocore's own words.
    self.assertIn("(gave up after 2 attempts)", errors[0])
    self.assertIn("total bytes expected is", errors[0])
    self.assertIn("NoSuchKey", errors[1])


if __name__ == "__main__":
  absltest.main()
