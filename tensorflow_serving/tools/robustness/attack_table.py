r"""The attacks at full size against the production engines; prints the
attack table (RSS growth, legit failures, slowest legit call, refusal).

  bazel run -c opt //tensorflow_serving/tools/robustness:attack_table -- \
      --budgets=small --out=/tmp/attack_table_small.md
  bazel run -c opt //tensorflow_serving/tools/robustness:attack_table -- \
      --budgets=default --out=/tmp/attack_table_default.md

The server runs with its defaults except the idle timeouts (handshake and
REST header timeout 5 s, so the idle-connection row ends in seconds, not
minutes) and, with --budgets=small, the budgets, set as a memory-conscious
deployment would (256 MiB per gRPC connection and REST body, 1 GiB per
server). With --budgets=default they are the defaults (4 GiB per API,
messages and bodies up to 2 GiB-1, admitting every message upstream admits),
and the bombs, the endless body and the held message grow to pass those
limits. --server_args adds or overrides flags. Takes a few minutes and a few
GB of memory on the attacker's side at most.
"""

from __future__ import annotations

import dataclasses
import resource
import sys

from absl import app
from absl import flags

from tensorflow_serving.tools.robustness import attacks
from tensorflow_serving.tools.robustness import cases
from tensorflow_serving.tools.robustness import harness

flags.DEFINE_enum(
    "budgets",
    "small",
    ["small", "default"],
    "The server's memory budgets: a small host's, or the defaults.",
)
flags.DEFINE_list("server_args", [], "Extra flags for the target server.")
flags.DEFINE_list("only", [], "Run only attacks whose name contains these.")
flags.DEFINE_bool("small", False, "The test suite's sizes (a smoke run).")
flags.DEFINE_string("out", "", "Also write the Markdown table here.")
FLAGS = flags.FLAGS

_CONNECTION_BUDGET = 256 << 20
_SERVER_BUDGET = 1 << 30
_TIMEOUT_ARGS = (
    "--grpc_channel_arguments=grpc.server_handshake_timeout_ms=5000",
    "--rest_api_header_timeout_ms=5000",
)
_SMALL_HOST_ARGS = (
    "--grpc_channel_arguments=grpc.server_handshake_timeout_ms=5000,"
    f"grpc.tf_serving.max_connection_buffer_bytes={_CONNECTION_BUDGET},"
    f"grpc.tf_serving.max_server_buffer_bytes={_SERVER_BUDGET}",
    "--rest_api_header_timeout_ms=5000",
    f"--rest_api_max_body_bytes={_CONNECTION_BUDGET}",
    f"--rest_api_max_buffer_bytes={_SERVER_BUDGET}",
)
# The largest message and body the defaults allow (upstream's 2 GiB-1).
_DEFAULT_MESSAGE_LIMIT = (1 << 31) - 1


def _setup(size: attacks.Size) -> tuple[tuple[str, ...], int, attacks.Size]:
  """The server's flags, the held message's size, and the attack sizes."""
  if FLAGS.budgets == "small":
    # A message just under the per-connection budget.
    return _SMALL_HOST_ARGS, _CONNECTION_BUDGET - 1024, size
  if FLAGS.small:
    return _TIMEOUT_ARGS, _DEFAULT_MESSAGE_LIMIT, size
  # Past the 2 GiB-1 limits, so each gets its refusal: bombs inflating to
  # ~3 GiB and a 3 GiB endless body.
  return (
      _TIMEOUT_ARGS,
      _DEFAULT_MESSAGE_LIMIT,
      dataclasses.replace(
          size, grpc_bomb=3 << 20, rest_bomb=3 << 20, rest_chunked=3 << 30
      ),
  )


def main(argv) -> int:
  del argv
  size = attacks.Size() if FLAGS.small else attacks.Size.full()
  # 20,000 idle connections need that many descriptors here and in the
  # server (which inherits the limit); keep some for everything else.
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
  want = min(hard, size.idle_connections + size.slowloris + 4096)
  if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
  room = want - size.slowloris - 4096
  if size.idle_connections > room:
    print(f"idle connections capped at {room} (RLIMIT_NOFILE)", file=sys.stderr)
    size = dataclasses.replace(size, idle_connections=room)
  server_args, held, size = _setup(size)
  target = harness.Target([*server_args, *FLAGS.server_args])
  rows = []
  ok = True
  try:
    for case in cases.cases(idle_wait_s=15.0, held_message_bytes=held):
      if FLAGS.only and not any(word in case.name for word in FLAGS.only):
        continue
      print(f"running: {case.name}", file=sys.stderr, flush=True)
      row = harness.run(
          target, case.name, lambda c=case: c.attack(target, size)
      )
      passed = (
          cases.matches(case, row.refusal)
          and not row.legit_failures
          and target.alive()
      )
      ok = ok and passed
      rows.append(row)
      print(harness.markdown([row]).splitlines()[-1], flush=True)
      for failure in row.failures:
        print(f"  legit failure: {failure}", file=sys.stderr, flush=True)
      if not target.alive():
        break
  finally:
    took = target.stop(timeout_s=40)
  table = harness.markdown(rows)
  table += f"\n\nSIGTERM after the run: stopped in {took:.1f} s."
  print("\n" + table)
  if FLAGS.out:
    with open(FLAGS.out, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  return 0 if ok else 1


if __name__ == "__main__":
  app.run(main)
