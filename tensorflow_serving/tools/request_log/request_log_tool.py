r"""Reads the server's request logs: summary, warmup file, replay.

  python -m tensorflow_serving.tools.request_log.request_log_tool summary \
      --logs='/tmp/logs/half-*'
  python -m tensorflow_serving.tools.request_log.request_log_tool warmup \
      --logs='/tmp/logs/half-*' --count=100 --output=/models/half/2
  python -m tensorflow_serving.tools.request_log.request_log_tool replay \
      --logs='/tmp/logs/half-*' --protocol=grpc --server=127.0.0.1:8500 \
      --rate=200 --duration=30

`--logs` takes files, directories and glob patterns (comma-separated).
`warmup --output` takes a version directory (the file goes to its
assets.extra/tf_serving_warmup_requests) or a file path.
"""

from __future__ import annotations

import asyncio
import json
import sys

from absl import app
from absl import flags

from tensorflow_serving.tools.request_log import log_files
from tensorflow_serving.tools.request_log import replay as replay_lib
from tensorflow_serving.tools.request_log import warmup_file

COMMANDS = ("summary", "warmup", "replay")

flags.DEFINE_list("logs", [], "Log files, directories or glob patterns.")
flags.DEFINE_bool("json", False, "Print the result as one JSON object.")
# warmup
flags.DEFINE_string("output", "", "warmup: version directory or file path.")
flags.DEFINE_integer(
    "count",
    100,
    "warmup: records to sample (upstream reads at most 1000).",
    lower_bound=1,
)
flags.DEFINE_integer("seed", 0, "warmup: sampling seed.")
flags.DEFINE_string(
    "signature", None, "warmup: only requests logged for this signature."
)
# replay
flags.DEFINE_enum("protocol", "grpc", ["grpc", "rest"], "replay: API to call.")
flags.DEFINE_string(
    "server", "127.0.0.1:8500", "replay: host:port of that API."
)
flags.DEFINE_float(
    "rate", 0.0, "replay: requests per second (0: as fast as possible)."
)
flags.DEFINE_float("duration", 10.0, "replay: seconds to send for (0: none).")
flags.DEFINE_integer(
    "max_requests",
    0,
    "replay: stop after this many (0: no cap).",
    lower_bound=0,
)
flags.DEFINE_integer(
    "max_in_flight", 64, "replay: most calls outstanding.", lower_bound=1
)
flags.DEFINE_string(
    "model_name", "", "replay: send to this model instead of the logged one."
)
flags.DEFINE_bool(
    "keep_version",
    False,
    "replay: send to the logged version (default: the latest).",
)
flags.DEFINE_float("timeout", 30.0, "replay: seconds per call.")

FLAGS = flags.FLAGS


def _files() -> list[str]:
  files = log_files.expand(FLAGS.logs)
  if not files:
    raise app.UsageError(f"no log files found for --logs={FLAGS.logs}")
  return files


def _summary() -> int:
  errors = log_files.ReadErrors()
  summary = log_files.summarize(log_files.read(_files(), errors))
  if FLAGS.json:
    summary["errors"] = dict(errors.counts)
    print(json.dumps(summary, indent=2))
  else:
    print(log_files.format_summary(summary, errors))
  return 0


def _warmup() -> int:
  if not FLAGS.output:
    raise app.UsageError("warmup needs --output")
  errors = log_files.ReadErrors()
  records = warmup_file.sample(
      log_files.read(_files(), errors),
      FLAGS.count,
      seed=FLAGS.seed,
      signature=FLAGS.signature,
  )
  if not records:
    print("no replayable request in the logs", file=sys.stderr)
    return 1
  path = warmup_file.write(records, FLAGS.output)
  print(f"wrote {len(records)} warmup records to {path}")
  return 0


def _replay() -> int:
  calls, skipped = replay_lib.calls_from_logs(
      log_files.read(_files()),
      FLAGS.protocol,
      model_name=FLAGS.model_name or None,
      keep_version=FLAGS.keep_version,
  )
  for reason, count in sorted(skipped.items()):
    print(f"skipped {count} records ({reason})", file=sys.stderr)
  if not calls:
    print("no request to replay", file=sys.stderr)
    return 1
  summary = asyncio.run(
      replay_lib.replay(
          calls,
          FLAGS.protocol,
          FLAGS.server,
          rate=FLAGS.rate,
          duration_s=FLAGS.duration,
          max_requests=FLAGS.max_requests,
          max_in_flight=FLAGS.max_in_flight,
          timeout_s=FLAGS.timeout,
      )
  )
  if FLAGS.json:
    print(json.dumps(summary, indent=2))
  else:
    print(replay_lib.format_summary(summary, FLAGS.protocol, FLAGS.server))
  return 0 if summary["ok"] else 1


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command: {', '.join(COMMANDS)}")
  return {"summary": _summary, "warmup": _warmup, "replay": _replay}[argv[1]]()


if __name__ == "__main__":
  app.run(main)
