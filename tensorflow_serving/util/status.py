"""One error type for the whole server.

Every layer raises `ServingError` with an absl/gRPC canonical code and the
message upstream TensorFlow Serving would give; the gRPC and REST adapters only
translate the code (to a gRPC status, or to an HTTP status via `http_status`).
"""

from __future__ import annotations

import enum


class Code(enum.IntEnum):
  """Canonical status codes (same numbering as absl::StatusCode and gRPC)."""

  OK = 0
  CANCELLED = 1
  UNKNOWN = 2
  INVALID_ARGUMENT = 3
  DEADLINE_EXCEEDED = 4
  NOT_FOUND = 5
  ALREADY_EXISTS = 6
  PERMISSION_DENIED = 7
  RESOURCE_EXHAUSTED = 8
  FAILED_PRECONDITION = 9
  ABORTED = 10
  OUT_OF_RANGE = 11
  UNIMPLEMENTED = 12
  INTERNAL = 13
  UNAVAILABLE = 14
  DATA_LOSS = 15
  UNAUTHENTICATED = 16


# Upstream's http_server.cc ToHTTPStatusCode table.
_HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


def http_status(code: Code) -> int:
  """HTTP status for a canonical code, as upstream's REST server maps it."""
  return _HTTP_STATUS.get(code, 500)


class ServingError(Exception):
  """A failed operation: canonical code plus a user-facing message."""

  def __init__(
      self, code: Code, message: str, retry_after_s: float | None = None
  ):
    super().__init__(message)
    self.code = Code(code)
    self.message = message
    # Set on a refusal under load: when the client may try again (gRPC's
    # grpc-retry-pushback-ms trailer, HTTP's Retry-After).
    self.retry_after_s = retry_after_s

  def __repr__(self) -> str:
    return f"ServingError({self.code.name}, {self.message!r})"

  def __str__(self) -> str:
    return self.message

  def __eq__(self, other: object) -> bool:
    return (
        isinstance(other, ServingError)
        and other.code == self.code
        and other.message == self.message
    )

  def __hash__(self) -> int:
    return hash((self.code, self.message))


def _factory(code: Code):
  def make(message: str) -> ServingError:
    return ServingError(code, message)

  make.__name__ = code.name.lower()
  make.__doc__ = f"A ServingError with code {code.name}."
  return make


cancelled = _factory(Code.CANCELLED)
unknown = _factory(Code.UNKNOWN)
invalid_argument = _factory(Code.INVALID_ARGUMENT)
deadline_exceeded = _factory(Code.DEADLINE_EXCEEDED)
not_found = _factory(Code.NOT_FOUND)
already_exists = _factory(Code.ALREADY_EXISTS)
permission_denied = _factory(Code.PERMISSION_DENIED)
resource_exhausted = _factory(Code.RESOURCE_EXHAUSTED)
failed_precondition = _factory(Code.FAILED_PRECONDITION)
aborted = _factory(Code.ABORTED)
out_of_range = _factory(Code.OUT_OF_RANGE)
unimplemented = _factory(Code.UNIMPLEMENTED)
internal = _factory(Code.INTERNAL)
unavailable = _factory(Code.UNAVAILABLE)
data_loss = _factory(Code.DATA_LOSS)


def from_exception(exc: BaseException) -> ServingError:
  """Wraps an arbitrary exception so a caller always gets a ServingError."""
  if isinstance(exc, ServingError):
    return exc
  return ServingError(Code.UNKNOWN, str(exc) or type(exc).__name__)
