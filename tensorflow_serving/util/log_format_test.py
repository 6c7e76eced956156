"""--log_format=json: the fields of each line."""

from __future__ import annotations

import json
import logging as std_logging

from absl.testing import absltest

from tensorflow_serving.core import servable_id
from tensorflow_serving.util import log_format


def record(msg, *args, level=std_logging.INFO, **extra):
  rec = std_logging.LogRecord(
      "absl", level, "/src/loader_harness.py", 42, msg, args, None
  )
  rec.__dict__.update(extra)
  return rec


class JsonFormatterTest(absltest.TestCase):

  def format(self, rec) -> dict:
    line = log_format.JsonFormatter().format(rec)
    self.assertNotIn("\n", line)
    return json.loads(line)

  def test_fields(self):
    rec = record("Loaded %d models", 3, level=std_logging.WARNING)
    rec.created = 1_796_608_984.25
    doc = self.format(rec)
    self.assertEqual(doc["time"], "2026-12-07T02:03:04.250000+00:00")
    self.assertEqual(doc["level"], "WARNING")
    self.assertEqual(doc["message"], "Loaded 3 models")
    self.assertEqual(doc["source"], "loader_harness.py:42")
    self.assertNotIn("model", doc)
    self.assertNotIn("request_id", doc)

  def test_servable_arguments_give_model_and_version(self):
    doc = self.format(
        record("Loading servable version %s", servable_id.ServableId("m", 7))
    )
    self.assertEqual(
        doc["message"], "Loading servable version {name: m version: 7}"
    )
    self.assertEqual((doc["model"], doc["version"]), ("m", 7))

  def test_request_id_and_exception(self):
    try:
      raise ValueError("boom")
    except ValueError:
      import sys  # pylint: disable=g-import-not-at-top

      rec = record("failed", level=std_logging.ERROR, request_id="r-1")
      rec.exc_info = sys.exc_info()
    doc = self.format(rec)
    self.assertEqual(doc["level"], "ERROR")
    self.assertEqual(doc["request_id"], "r-1")
    self.assertIn("ValueError: boom", doc["exception"])

  def test_unknown_format_is_refused(self):
    with self.assertRaises(ValueError):
      log_format.use("xml")


if __name__ == "__main__":
  absltest.main()
