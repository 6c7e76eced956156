"""The token state-changing model calls need when the operator sets one.

Beyond upstream and off by default (--model_service_token_file or
TF_SERVING_MODEL_SERVICE_TOKEN): ModelService's HandleReloadConfigRequest
and the Open Inference Protocol's repository load and unload then need
`authorization: Bearer TOKEN` (gRPC metadata or an HTTP header). Reading
status, metadata and running models stay open.
"""

from __future__ import annotations

import hmac
from typing import Any

from tensorflow_serving.util import status

_SCHEME = b"bearer"


def bearer_matches(authorization: bytes | str | None, token: bytes) -> bool:
  """Whether an `authorization` value is `Bearer <token>` (constant time)."""
  if authorization is None:
    return False
  if isinstance(authorization, str):
    authorization = authorization.encode("utf-8", "replace")
  scheme, _, presented = authorization.strip().partition(b" ")
  return scheme.lower() == _SCHEME and hmac.compare_digest(
      presented.strip(), token
  )


def grpc_call_allowed(context: Any, token: bytes | None) -> bool:
  """No token set, or the call's metadata carries it."""
  if token is None:
    return True
  return any(
      key.lower() == "authorization" and bearer_matches(value, token)
      for key, value in context.invocation_metadata()
  )


def refusal(call: str) -> status.ServingError:
  return status.ServingError(
      status.Code.UNAUTHENTICATED,
      f"{call} needs the server's model management token as "
      "`authorization: Bearer TOKEN`",
  )


def encoded(token: str | None) -> bytes | None:
  return token.encode("utf-8") if token else None
