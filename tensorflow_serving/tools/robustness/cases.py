"""The attack table: each row's attack, and the refusal it must get.

Shared by the scaled-down regression test (robustness_test.py) and the
full-size run (attack_table.py), so both check the same expectations.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
import re

from tensorflow_serving.tools.robustness import attacks
from tensorflow_serving.tools.robustness import harness

CALM = "GOAWAY ENHANCE_YOUR_CALM"


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  attack: Callable[[harness.Target, attacks.Size], str]
  expect: str  # a regular expression the refusal must match


def _grpc(fn, **kwargs):
  return lambda target, size: fn(target.grpc_port, size, **kwargs)


def _rest(fn):
  return lambda target, size: fn(target.rest_port, size)


def _idle(wait_s: float):
  def run(target, size):
    return attacks.idle_connections(
        target.grpc_port, target.rest_port, size, wait_s
    )

  return run


def cases(idle_wait_s: float, held_message_bytes: int) -> list[Case]:
  """Every row; idle connections get `idle_wait_s` to be closed.

  `held_message_bytes` is a message size the server's limits allow (just
  under its per-connection budget), streamed but never finished.
  """
  return [
      Case(
          "header block of 1-byte literals",
          _grpc(attacks.hpack_tiny_literals),
          CALM,
      ),
      Case(
          "HEADERS + endless CONTINUATION",
          _grpc(attacks.continuation_flood),
          CALM,
      ),
      Case(
          "DATA without END_STREAM, 4 GB length prefix",
          _grpc(attacks.length_prefix),
          r"grpc-status 8",
      ),
      Case(
          "2 GiB-1 length prefix (over the buffer budget)",
          _grpc(attacks.length_prefix, prefix=(1 << 31) - 1),
          r"grpc-status 8",
      ),
      Case(
          "a message within the limits, never finished",
          lambda target, size: attacks.held_within_budget(
              target.grpc_port, size, prefix=held_message_bytes
          ),
          r"window withheld",
      ),
      Case(
          "answers never read (zero window)",
          _grpc(attacks.zero_window_reader),
          r"reading paused|REFUSED_STREAM|FLOW_CONTROL_ERROR",
      ),
      Case("gRPC gzip bomb", _grpc(attacks.grpc_gzip_bomb), r"grpc-status 8"),
      Case("REST gzip bomb", _rest(attacks.rest_gzip_bomb), r"HTTP 413"),
      Case(
          "REST chunked endless body", _rest(attacks.rest_chunked), r"HTTP 413"
      ),
      Case("REST endless URL", _rest(attacks.rest_url), r"HTTP 414"),
      Case("rapid reset", _grpc(attacks.rapid_reset), CALM),
      Case(
          "open streams, never finished",
          _grpc(attacks.open_streams),
          r"RST_STREAM REFUSED_STREAM",
      ),
      Case(
          "open streams with 14 KB headers",
          _grpc(attacks.open_streams, header_bytes=14000),
          r"RST_STREAM REFUSED_STREAM",
      ),
      Case("PING flood", _grpc(attacks.ping_flood), CALM),
      Case("SETTINGS flood", _grpc(attacks.settings_flood), CALM),
      Case(
          "idle TCP connections and REST slowloris",
          _idle(idle_wait_s),
          r"closed (\d+)/\1$",
      ),
      Case(
          "garbage connections (one warning each, before)",
          _grpc(attacks.bad_connections),
          r"connections refused",
      ),
  ]


def matches(case: Case, refusal: str) -> bool:
  return re.search(case.expect, refusal) is not None
