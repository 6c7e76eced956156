"""moto's standalone S3 server on a loopback port, for s3:// serving tests.

The server speaks the real S3 REST protocol, so the model server's boto3
client is exercised end to end. It can be paused (SIGSTOP: connections hang,
as a stalled store's do) and stopped and restarted on the same port (the
store goes down, then comes back empty, as a re-created bucket would).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tensorflow_serving.model_servers.test_util import binaries

REGION = "us-east-1"
_ACCESS_KEY = "test-access-key"
_SECRET_KEY = "test-secret-key"


class S3Server:
  """One moto server process; `env()` points a model server at it."""

  def __init__(self, log_dir: str | None = None):
    self.port = binaries.pick_unused_port()
    self._log_dir = log_dir or binaries.test_tmpdir()
    self._proc: subprocess.Popen | None = None
    self._client = None

  @property
  def endpoint(self) -> str:
    return f"http://127.0.0.1:{self.port}"

  def env(self) -> dict[str, str]:
    """Upstream's variables for an S3-compatible server over plain HTTP."""
    return {
        "AWS_ACCESS_KEY_ID": _ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": _SECRET_KEY,
        "AWS_REGION": REGION,
        "S3_ENDPOINT": f"127.0.0.1:{self.port}",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
    }

  def start(self, timeout_s: float = 30.0) -> S3Server:
    log = open(  # pylint: disable=consider-using-with
        os.path.join(self._log_dir, f"moto_{self.port}.log"), "ab"
    )
    self._proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while True:
      try:
        socket.create_connection(("127.0.0.1", self.port), 0.5).close()
        return self
      except OSError:
        if self._proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError("moto server did not start") from None
        time.sleep(0.1)

  def stop(self) -> None:
    if self._proc is not None:
      self.resume()
      self._proc.terminate()
      try:
        self._proc.wait(10)
      except subprocess.TimeoutExpired:
        self._proc.kill()
        self._proc.wait(10)
      self._proc = None

  def pause(self) -> None:
    """Requests now hang: the kernel accepts, nobody answers."""
    if self._proc is not None:
      self._proc.send_signal(signal.SIGSTOP)

  def resume(self) -> None:
    if self._proc is not None:
      self._proc.send_signal(signal.SIGCONT)

  def client(self):
    """A boto3 S3 client for the test's own uploads and deletions."""
    if self._client is None:
      import boto3  # pylint: disable=g-import-not-at-top

      self._client = boto3.client(
          "s3",
          endpoint_url=self.endpoint,
          region_name=REGION,
          aws_access_key_id=_ACCESS_KEY,
          aws_secret_access_key=_SECRET_KEY,
      )
    return self._client

  def upload_tree(
      self, local_dir: str, bucket: str, prefix: str, skip: str = ""
  ) -> None:
    """Uploads every file under `local_dir` to `prefix/` (but `skip`)."""
    for dirpath, _, files in os.walk(local_dir):
      for name in sorted(files):
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
        if skip and rel.startswith(skip):
          continue
        self.client().upload_file(path, bucket, f"{prefix}/{rel}")

  def delete_prefix(self, bucket: str, prefix: str) -> None:
    listing = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    for item in listing.get("Contents", ()):
      self.client().delete_object(Bucket=bucket, Key=item["Key"])

  def __enter__(self) -> S3Server:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()
