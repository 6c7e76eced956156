"""moto's standalone S3 server on a loopback port, for s3:// serving tests.

The server speaks the real S3 REST protocol, so the model server's boto3
client is exercised end to end. It can be paused (SIGSTOP: connections hang,
as a stalled store's do) and stopped and restarted on the same port (the
store goes down, then comes back empty, as a re-created bucket would).
Started with `auth=True`, it checks signatures and IAM policies: the model
server gets a user of its own whose S3 access `deny`/`allow` toggle.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from tensorflow_serving.test_util import binaries

REGION = "us-east-1"
_ACCESS_KEY = "test-access-key"
_SECRET_KEY = "test-secret-key"
_SERVER_USER = "model-server"
_ADMIN_USER = "test-admin"
_S3_POLICY = "s3-access"
# moto serves this many requests unauthenticated, then enforces IAM: enough
# to create the two users, their keys and policies.
_SETUP_ACTIONS = 6


def _policy(action: str) -> str:
  return json.dumps(
      {
          "Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
      }
  )


class S3Server:
  """One moto server process; `env()` points a model server at it."""

  def __init__(self, log_dir: str | None = None, auth: bool = False):
    self._auth = auth
    self.port = binaries.pick_unused_port()
    self._log_dir = log_dir or binaries.test_tmpdir()
    self._proc: subprocess.Popen | None = None
    self._client = None
    self._iam = None
    self._keys = {
        _SERVER_USER: (_ACCESS_KEY, _SECRET_KEY),
        _ADMIN_USER: (_ACCESS_KEY, _SECRET_KEY),
    }

  @property
  def endpoint(self) -> str:
    return f"http://127.0.0.1:{self.port}"

  def env(self) -> dict[str, str]:
    """Upstream's variables for an S3-compatible server over plain HTTP."""
    access_key, secret_key = self._keys[_SERVER_USER]
    return {
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": REGION,
        "S3_ENDPOINT": f"127.0.0.1:{self.port}",
        "S3_USE_HTTPS": "0",
        "S3_VERIFY_SSL": "0",
    }

  def start(
      self, timeout_s: float = 30.0, auth: bool | None = None
  ) -> S3Server:
    """Starts (again) on the same port, empty; `auth` enforces IAM."""
    if auth is None:
      auth = self._auth
    env = dict(os.environ)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    if auth:
      env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_ACTIONS)
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
        env=env,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while True:
      try:
        socket.create_connection(("127.0.0.1", self.port), 0.5).close()
        break
      except OSError:
        if self._proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError("moto server did not start") from None
        time.sleep(0.1)
    if auth:
      self._create_users()
    return self

  def _create_users(self) -> None:
    import boto3  # pylint: disable=g-import-not-at-top

    iam = boto3.client(
        "iam",
        endpoint_url=self.endpoint,
        region_name=REGION,
        aws_access_key_id=_ACCESS_KEY,
        aws_secret_access_key=_SECRET_KEY,
    )
    for user in (_ADMIN_USER, _SERVER_USER):
      iam.create_user(UserName=user)
      key = iam.create_access_key(UserName=user)["AccessKey"]
      self._keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
    iam.put_user_policy(
        UserName=_ADMIN_USER, PolicyName="all", PolicyDocument=_policy("*")
    )
    iam.put_user_policy(
        UserName=_SERVER_USER,
        PolicyName=_S3_POLICY,
        PolicyDocument=_policy("s3:*"),
    )
    self._client = None
    self._iam = self._admin_client("iam")

  def deny(self) -> None:
    """The model server's user loses its S3 access (auth=True only)."""
    self._iam.delete_user_policy(UserName=_SERVER_USER, PolicyName=_S3_POLICY)

  def allow(self) -> None:
    self._iam.put_user_policy(
        UserName=_SERVER_USER,
        PolicyName=_S3_POLICY,
        PolicyDocument=_policy("s3:*"),
    )

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
      self._client = self._admin_client("s3")
    return self._client

  def _admin_client(self, service: str):
    import boto3  # pylint: disable=g-import-not-at-top

    access_key, secret_key = self._keys[_ADMIN_USER]
    return boto3.client(
        service,
        endpoint_url=self.endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )

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


class Publisher:
  """Publishes model versions into a bucket prefix, whole.

  The interface of integration_test's Publisher: `stage` exports ahead of
  time (outside a timed section), `publish` uploads. Servers load a version
  only once its listing is complete, whatever order its files arrive in.
  """

  def __init__(
      self,
      store: S3Server,
      bucket: str,
      prefix: str,
      export: Callable[[str, int], object],
  ):
    self._store = store
    self._bucket = bucket
    self._prefix = prefix
    self._export = export
    self._staged: dict[int, str] = {}

  def stage(self, version: int) -> str:
    export_dir = os.path.join(
        binaries.test_tmpdir(), f"s3-export-{self._prefix}-{version}"
    )
    self._export(export_dir, version)
    self._staged[version] = export_dir
    return export_dir

  def publish(self, version: int) -> None:
    if version not in self._staged:
      self.stage(version)
    self._store.upload_tree(
        self._staged.pop(version), self._bucket, f"{self._prefix}/{version}"
    )


class FaultProxy:
  """A TCP proxy in front of an S3 server that breaks chosen downloads.

  Requests whose request line contains a watched fragment either get their
  response cut a little into its body (the network failing mid-download) or
  first run a hook (e.g. deleting the object, so it vanishes as it is being
  fetched). Everything else passes through unchanged. Each connection is
  served by two threads; all stop with the proxy.
  """

  def __init__(self, upstream_port: int):
    self._upstream_port = upstream_port
    self._listener = socket.create_server(("127.0.0.1", 0))
    self.port = self._listener.getsockname()[1]
    self._lock = threading.Lock()
    self._cut: set[bytes] = set()
    self._hooks: dict[bytes, Callable[[], object]] = {}
    self._sockets: list[socket.socket] = []
    self._stopped = False
    threading.Thread(target=self._accept, daemon=True).start()

  def cut_responses(self, fragment: str) -> None:
    """Cuts every response to a request line containing `fragment`."""
    with self._lock:
      self._cut.add(fragment.encode())

  def before_first(self, fragment: str, hook: Callable[[], object]) -> None:
    """Runs `hook` once, before forwarding the first matching request."""
    with self._lock:
      self._hooks[fragment.encode()] = hook

  def clear(self) -> None:
    with self._lock:
      self._cut.clear()
      self._hooks.clear()

  def stop(self) -> None:
    self._stopped = True
    self._listener.close()
    with self._lock:
      sockets, self._sockets = self._sockets, []
    for s in sockets:
      _close(s)

  def _accept(self) -> None:
    while not self._stopped:
      try:
        client, _ = self._listener.accept()
      except OSError:
        return
      try:
        upstream = socket.create_connection(
            ("127.0.0.1", self._upstream_port), 10
        )
      except OSError:
        _close(client)
        continue
      with self._lock:
        self._sockets += [client, upstream]
      cut = threading.Event()
      threading.Thread(
          target=self._requests, args=(client, upstream, cut), daemon=True
      ).start()
      threading.Thread(
          target=self._responses, args=(upstream, client, cut), daemon=True
      ).start()

  def _requests(self, src, dst, cut: threading.Event) -> None:
    while True:
      try:
        data = src.recv(65536)
      except OSError:
        data = b""
      if not data:
        _close(dst)
        return
      line = data.split(b"\r\n", 1)[0]
      with self._lock:
        if any(f in line for f in self._cut):
          cut.set()
        hooks = [f for f in self._hooks if f in line]
        run = [self._hooks.pop(f) for f in hooks]
      for hook in run:
        hook()
      try:
        dst.sendall(data)
      except OSError:
        _close(src)
        return

  def _responses(self, src, dst, cut: threading.Event) -> None:
    headers_passed = False
    while True:
      try:
        data = src.recv(65536)
      except OSError:
        data = b""
      if not data:
        _close(dst)
        return
      if cut.is_set():
        # The headers and a little of the body pass, then the line dies.
        if not headers_passed:
          head, sep, body = data.partition(b"\r\n\r\n")
          headers_passed = bool(sep)
          data, rest = head + sep, body
        else:
          rest, data = data, b""
        if rest:
          try:
            dst.sendall(data + rest[: max(1, len(rest) // 4)])
          except OSError:
            pass
          _close(dst)
          _close(src)
          return
      try:
        dst.sendall(data)
      except OSError:
        _close(src)
        return


def _close(s: socket.socket) -> None:
  try:
    s.shutdown(socket.SHUT_RDWR)
  except OSError:
    pass
  s.close()
