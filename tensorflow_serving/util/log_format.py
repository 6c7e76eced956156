"""--log_format=json: one JSON object per log line, for log pipelines.

Each line holds `time` (UTC, RFC 3339 with microseconds), `level`
(DEBUG, INFO, WARNING, ERROR, FATAL), `message`, `source` (file:line) and
`thread`; `model` and `version` when the message names a servable version
(an argument that has `name` and `version`, as core's ServableId does, so
every lifecycle line carries them without changing its call); `request_id`
when the record has one (`logging.info(..., extra={"request_id": ...})`);
and `exception` with the traceback when there is one.

Only Python logging is formatted: TensorFlow's C++ lines (`I0000 ...`) keep
their format (TF_CPP_MIN_LOG_LEVEL still filters them).
"""

from __future__ import annotations

import datetime
import logging as std_logging
import os
from typing import Any

from absl import logging
import orjson

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

_LEVELS = {
    std_logging.DEBUG: "DEBUG",
    std_logging.INFO: "INFO",
    std_logging.WARNING: "WARNING",
    std_logging.ERROR: "ERROR",
    std_logging.CRITICAL: "FATAL",
}


def _servable_of(args: Any) -> Any:
  if not isinstance(args, tuple):
    return None
  for arg in args:
    if hasattr(arg, "name") and hasattr(arg, "version"):
      if isinstance(arg.name, str) and isinstance(arg.version, int):
        return arg
  return None


class JsonFormatter(std_logging.Formatter):
  """Formats a LogRecord as one line of JSON."""

  def format(self, record: std_logging.LogRecord) -> str:
    doc: dict[str, Any] = {
        "time": (
            datetime.datetime.fromtimestamp(
                record.created, datetime.UTC
            ).isoformat(timespec="microseconds")
        ),
        "level": _LEVELS.get(record.levelno, record.levelname),
        "message": record.getMessage(),
        "source": f"{os.path.basename(record.pathname)}:{record.lineno}",
        "thread": record.thread,
    }
    servable = _servable_of(record.args)
    if servable is not None:
      doc["model"] = servable.name
      doc["version"] = servable.version
    request_id = getattr(record, "request_id", None)
    if request_id is not None:
      doc["request_id"] = str(request_id)
    if record.exc_info:
      doc["exception"] = self.formatException(record.exc_info)
    return orjson.dumps(doc, default=str).decode()


def use(log_format: str) -> None:
  """Sets the format of absl's log handler (`text` keeps absl's own)."""
  if log_format not in FORMATS:
    raise ValueError(f"unknown log format {log_format!r}")
  if log_format == JSON:
    logging.get_absl_handler().setFormatter(JsonFormatter())
