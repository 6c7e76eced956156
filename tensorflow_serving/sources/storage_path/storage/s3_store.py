"""S3 and S3-compatible stores (MinIO, Ceph, ...) through boto3.

Configuration follows the environment variables upstream documents for its
S3 file system, on top of boto3's standard credential chain (environment,
shared credentials and config files, web identity, container and instance
roles):

* `AWS_REGION` (or `AWS_DEFAULT_REGION`): the bucket's region; us-east-1
  when unset, as upstream.
* `S3_ENDPOINT`: `host[:port]` (or a full URL) of an S3-compatible server;
  boto3's own `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` work too.
* `S3_USE_HTTPS`: `0` to talk plain HTTP to `S3_ENDPOINT` (default `1`).
* `S3_VERIFY_SSL`: `0` to skip certificate verification (default `1`).

With a custom endpoint, buckets are addressed by path (`host/bucket/key`),
which every S3-compatible server accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import os

from tensorflow_serving.sources.storage_path.storage import object_store

# Read this much per chunk: large enough to keep per-chunk Python overhead
# negligible, small enough that a stop request is noticed quickly.
_CHUNK_BYTES = 1 << 20
_TRANSIENT_CODES = frozenset(
    {"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown"}
)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
  value = environ.get(name)
  if value is None or not value.strip():
    return default
  return value.strip().lower() not in ("0", "false", "no", "off")


def endpoint_url(environ: Mapping[str, str]) -> str | None:
  """The endpoint URL `S3_ENDPOINT` and `S3_USE_HTTPS` describe, if any."""
  endpoint = environ.get("S3_ENDPOINT", "").strip()
  if not endpoint:
    return None
  if "://" in endpoint:
    return endpoint
  scheme = "https" if _flag(environ, "S3_USE_HTTPS", True) else "http"
  return f"{scheme}://{endpoint}"


class S3Store:
  """An `object_store.ObjectStore` over one boto3 S3 client.

  The client is made on first use (importing boto3 costs time every server
  start would otherwise pay). boto3's own retries are off: the cache's retry
  policy and the next poll are the only retries, so every wait is bounded by
  `request_timeout_s` per request.
  """

  def __init__(self, request_timeout_s: float):
    self._request_timeout_s = request_timeout_s
    self._client = None

  def _s3(self):
    if self._client is None:
      # pylint: disable=g-import-not-at-top
      import boto3
      from botocore import config as botocore_config

      # pylint: enable=g-import-not-at-top

      # Read when the client is made, as boto3 reads its own variables.
      env = os.environ
      endpoint = endpoint_url(env)
      custom_endpoint = bool(
          endpoint
          or env.get("AWS_ENDPOINT_URL")
          or env.get("AWS_ENDPOINT_URL_S3")
      )
      config = botocore_config.Config(
          connect_timeout=self._request_timeout_s,
          read_timeout=self._request_timeout_s,
          retries={"max_attempts": 1, "mode": "standard"},
          s3={"addressing_style": "path"} if custom_endpoint else None,
      )
      session = boto3.session.Session()
      region = (
          env.get("AWS_REGION")
          or env.get("AWS_DEFAULT_REGION")
          or session.region_name
          or "us-east-1"
      )
      self._client = session.client(
          "s3",
          region_name=region,
          endpoint_url=endpoint,
          verify=None if _flag(env, "S3_VERIFY_SSL", True) else False,
          config=config,
      )
    return self._client

  def list_objects(
      self, bucket: str, prefix: str
  ) -> list[object_store.ObjectInfo]:
    paginator = self._s3().get_paginator("list_objects_v2")
    out = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
      for item in page.get("Contents", ()):
        out.append(object_store.ObjectInfo(item["Key"], int(item["Size"])))
    return out

  def read_object(self, bucket: str, key: str) -> Iterator[bytes]:
    body = self._s3().get_object(Bucket=bucket, Key=key)["Body"]
    try:
      yield from body.iter_chunks(_CHUNK_BYTES)
    finally:
      body.close()

  def is_transient(self, error: BaseException) -> bool:
    # pylint: disable=g-import-not-at-top
    from botocore import exceptions as botocore_exceptions

    # pylint: enable=g-import-not-at-top

    if isinstance(error, botocore_exceptions.ClientError):
      response = error.response
      code = response.get("Error", {}).get("Code", "")
      http = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
      return code in _TRANSIENT_CODES or http >= 500
    return isinstance(
        error,
        (
            botocore_exceptions.ConnectionError,
            botocore_exceptions.HTTPClientError,
            botocore_exceptions.ResponseStreamingError,
            botocore_exceptions.IncompleteReadError,
            ConnectionError,
            TimeoutError,
        ),
    )
