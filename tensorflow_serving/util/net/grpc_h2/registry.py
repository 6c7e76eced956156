"""grpc.Server's handler registration: which method a call's path names."""

from __future__ import annotations

import collections
import dataclasses
import inspect
from typing import Any

import grpc


@dataclasses.dataclass(frozen=True)
class Method:
  handler: Any  # grpc.RpcMethodHandler
  is_async: bool

  @property
  def streaming(self) -> bool:
    return self.handler.request_streaming or self.handler.response_streaming


def _method(handler: Any) -> Method:
  function = (
      handler.unary_unary
      or handler.unary_stream
      or handler.stream_unary
      or handler.stream_stream
  )
  is_async = inspect.iscoroutinefunction(
      function
  ) or inspect.isasyncgenfunction(function)
  return Method(handler, is_async)


class HandlerCallDetails(
    collections.namedtuple(
        "HandlerCallDetails", ("method", "invocation_metadata")
    ),
    grpc.HandlerCallDetails,
):
  pass


class Registry:
  """grpc.Server's handler registration, with a bounded lookup cache."""

  def __init__(self):
    self._generic: list[Any] = []
    self._methods: dict[bytes, Method | None] = {}

  def add_generic_rpc_handlers(self, handlers) -> None:
    self._generic.extend(handlers)
    self._methods.clear()

  def lookup(self, path: bytes) -> Method | None:
    try:
      return self._methods[path]
    except KeyError:
      pass
    details = HandlerCallDetails(path.decode("latin-1"), ())
    method = None
    for generic in self._generic:
      handler = generic.service(details)
      if handler is not None:
        method = _method(handler)
        break
    if len(self._methods) < 1024:  # unknown paths must not grow it forever
      self._methods[path] = method
    return method
