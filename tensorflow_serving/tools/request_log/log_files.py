"""Reading request logs (TFRecord files of PredictionLog) and summarizing them.

Paths may be files, directories (every `*.tfrecord` in them) or glob
patterns such as `/var/log/tfs/mnist-*`; files are read in name order, which
for one stream is the order they were written. A file still being written
may end in a truncated record: reading stops there quietly. A record that
does not parse, or a file that is corrupt, is counted as an error and
reading goes on with the next file.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import glob
import os
from typing import Any

from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.servables.tensorflow import tensor_codec
from tensorflow_serving.util import status

PredictionLog = prediction_log_pb2.PredictionLog


def expand(paths: Sequence[str]) -> list[str]:
  """Files named by `paths` (files, directories, globs), sorted, no repeats."""
  files: set[str] = set()
  for path in paths:
    if os.path.isdir(path):
      files.update(glob.glob(os.path.join(path, "*.tfrecord")))
    elif os.path.exists(path):
      files.add(path)
    else:
      files.update(p for p in glob.glob(path) if os.path.isfile(p))
  return sorted(files)


@dataclasses.dataclass
class ReadErrors:
  """What could not be read: `kind -> count`, and the first few messages."""

  counts: collections.Counter = dataclasses.field(
      default_factory=collections.Counter
  )
  examples: list[str] = dataclasses.field(default_factory=list)

  def add(self, kind: str, message: str) -> None:
    self.counts[kind] += 1
    if len(self.examples) < 5:
      self.examples.append(message)


def read(
    files: Iterable[str], errors: ReadErrors | None = None
) -> Iterator[PredictionLog]:
  """Every PredictionLog in `files`; problems go to `errors`."""
  errors = errors if errors is not None else ReadErrors()
  for path in files:
    try:
      for raw in tfrecord_log_collector.read_records(path):
        log = PredictionLog()
        try:
          log.ParseFromString(raw)
        except Exception as exc:  # pylint: disable=broad-except
          errors.add("unparsable_record", f"{path}: {exc}")
          continue
        yield log
    except (OSError, status.ServingError) as exc:
      errors.add("unreadable_file", f"{path}: {exc}")


def _request_of(log: PredictionLog) -> Any:
  kind = log.WhichOneof("log_type")
  return getattr(log, kind).request if kind else None


def _tensor_signature(tensors: Any) -> str:
  """`alias:dtype[shape]` for each tensor, sorted: one request's inputs."""
  parts = []
  for alias in sorted(tensors):
    proto = tensors[alias]
    dims = ",".join(
        str(d.size) if d.size >= 0 else "?" for d in proto.tensor_shape.dim
    )
    dtype = tensor_codec.dtype_name(proto.dtype)
    parts.append(f"{alias}:{dtype}[{dims}]")
  return " ".join(parts)


def _examples_of(request: Any) -> int:
  kind = request.input.WhichOneof("kind")
  return len(getattr(request.input, kind).examples) if kind else 0


def summarize(logs: Iterable[PredictionLog]) -> dict[str, Any]:
  """Counts per model/version/signature/API, input shapes, time span.

  Only requests that were answered are logged (as upstream's logger is
  called after a successful run), so a log entry without a response, or a
  record that cannot be read, is what this reports as an error.
  """
  groups: dict[tuple, dict[str, Any]] = {}
  first = last = None
  total = 0
  no_response = 0
  for log in logs:
    total += 1
    kind = log.WhichOneof("log_type") or "none"
    md = log.log_metadata
    spec = md.model_spec
    key = (spec.name, spec.version.value, spec.signature_name, kind)
    group = groups.get(key)
    if group is None:
      group = groups[key] = {
          "model": spec.name,
          "version": spec.version.value,
          "signature": spec.signature_name,
          "log_type": kind,
          "requests": 0,
          "inputs": collections.Counter(),
      }
    group["requests"] += 1
    request = _request_of(log)
    if kind == "predict_log":
      group["inputs"][_tensor_signature(request.inputs)] += 1
    elif kind in ("classify_log", "regress_log", "multi_inference_log"):
      group["inputs"][f"examples[{_examples_of(request)}]"] += 1
    kind_log = getattr(log, kind, None) if kind != "none" else None
    if kind_log is None or not kind_log.HasField("response"):
      no_response += 1
    if md.timestamp_secs:
      first = (
          md.timestamp_secs if first is None else min(first, md.timestamp_secs)
      )
      last = md.timestamp_secs if last is None else max(last, md.timestamp_secs)
  return {
      "requests": total,
      "without_response": no_response,
      "first_timestamp_secs": first,
      "last_timestamp_secs": last,
      "groups": [
          {**g, "inputs": dict(g["inputs"].most_common())}
          for _, g in sorted(groups.items())
      ],
  }


def format_summary(summary: dict[str, Any], errors: ReadErrors) -> str:
  lines = [
      f"{summary['requests']} logged requests"
      + (
          f", {summary['first_timestamp_secs']} .. "
          f"{summary['last_timestamp_secs']} (seconds since the epoch)"
          if summary["first_timestamp_secs"] is not None
          else ""
      )
  ]
  for g in summary["groups"]:
    lines.append(
        f"  {g['model']} v{g['version']} {g['signature'] or '-'} "
        f"{g['log_type']}: {g['requests']}"
    )
    for shape, count in g["inputs"].items():
      lines.append(f"    {count:>8}  {shape}")
  error_total = sum(errors.counts.values()) + summary["without_response"]
  lines.append(f"errors: {error_total}")
  if summary["without_response"]:
    lines.append(f"  without_response: {summary['without_response']}")
  for kind, count in sorted(errors.counts.items()):
    lines.append(f"  {kind}: {count}")
  for message in errors.examples:
    lines.append(f"    {message}")
  return "\n".join(lines)
