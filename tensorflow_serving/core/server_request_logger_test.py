"""ServerRequestLogger and its writer: configs, sampling, bounds, outcomes."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time

from absl.testing import absltest

from tensorflow_serving.apis import logging_pb2
from tensorflow_serving.config import logging_config_pb2
from tensorflow_serving.core import request_log_writer
from tensorflow_serving.core import server_request_logger
from tensorflow_serving.core import tfrecord_log_collector
from tensorflow_serving.util import status

LoggingConfig = logging_config_pb2.LoggingConfig


@dataclasses.dataclass
class Entry:
  model_name: str
  payload: bytes = b"p"
  nbytes: int = 1
  timestamp_s: float = 1_700_000_000.0

  def serialize(self, metadata: logging_pb2.LogMetadata) -> bytes:
    metadata.model_spec.name = self.model_name
    return metadata.SerializeToString() + b"|" + self.payload


class RecordingCollector:
  """Collects in memory; `gate` (if set) blocks each write until opened."""

  def __init__(self, gate: threading.Event | None = None, fail=None):
    self.messages: list[bytes] = []
    self.closed = False
    self.gate = gate
    self.fail = fail

  def collect_message(self, message: bytes) -> None:
    if self.gate is not None:
      self.gate.wait(10)
    if self.fail is not None:
      raise self.fail
    self.messages.append(message)

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self.closed = True


def config(prefix: str, rate: float = 1.0, kind: str = "memory"):
  c = LoggingConfig()
  c.log_collector_config.type = kind
  c.log_collector_config.filename_prefix = prefix
  c.sampling_config.sampling_rate = rate
  return c


class ServerRequestLoggerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.results: list[tuple[str, str]] = []
    self.created: list[RecordingCollector] = []
    self.gate: threading.Event | None = None
    self.fail = None
    self.queue = request_log_writer.QueueOptions(
        max_entries=4, max_bytes=100, idle_flush_s=0.05
    )

  def make(self, stream=""):
    def factory(cfg, context):
      del cfg, context
      c = RecordingCollector(self.gate, self.fail)
      self.created.append(c)
      return c

    writer = request_log_writer.RequestLogWriter(
        self.queue, lambda *r: self.results.append(r)
    )
    logger = server_request_logger.ServerRequestLogger(
        writer, {"memory": factory}, stream, ("serve", "gpu")
    )
    self.addCleanup(logger.stop)
    return logger

  def wait_for(self, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(self.results) < n and time.monotonic() < deadline:
      time.sleep(0.01)
    self.assertLen(self.results, n)

  def test_unknown_collector_type_is_upstreams_not_found(self):
    logger = self.make()
    logger.update({"m": [config("/a")]})
    before = logger.by_model
    with self.assertRaises(status.ServingError) as ctx:
      logger.update({"m": [config("/a")], "n": [config("/b", kind="kafka")]})
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)
    self.assertEqual(
        ctx.exception.message,
        "Cannot find LogCollector::Factory for type: kafka",
    )
    self.assertIs(logger.by_model, before)  # Nothing changed.

  def test_logs_each_sampled_request_with_metadata(self):
    logger = self.make()
    logger.update({"m": [config("/a")]})
    for i in range(3):
      logger.log("m", lambda i=i: Entry("m", b"%d" % i))
    logger.log("other", lambda: Entry("other"))  # No logging_config.
    self.wait_for(3)
    self.assertEqual(self.results, [("m", "OK")] * 3)
    (collector,) = self.created
    metadata_bytes, payload = collector.messages[0].split(b"|")
    self.assertEqual(payload, b"0")
    metadata = logging_pb2.LogMetadata.FromString(metadata_bytes)
    self.assertEqual(metadata.model_spec.name, "m")
    self.assertEqual(metadata.sampling_config.sampling_rate, 1.0)
    self.assertEqual(list(metadata.saved_model_tags), ["serve", "gpu"])
    self.assertEqual(metadata.timestamp_secs, 1_700_000_000)

  def test_sampling_rate_zero_logs_nothing_and_makes_no_entry(self):
    logger = self.make()
    logger.update({"m": [config("/a", rate=0.0)]})

    def make_entry():
      raise AssertionError("entry made for an unsampled request")

    for _ in range(100):
      logger.log("m", make_entry)
    time.sleep(0.1)
    self.assertEqual(self.results, [])

  def test_sampling_rate_is_a_probability(self):
    self.queue = request_log_writer.QueueOptions(max_entries=10_000)
    logger = self.make()
    logger.update({"m": [config("/a", rate=0.25)]})
    for _ in range(4000):
      logger.log("m", lambda: Entry("m"))
    logger.stop()
    # Binomial(4000, 0.25): mean 1000, sd ~27; 8 sd either side.
    self.assertBetween(len(self.results), 780, 1220)

  def test_same_config_keeps_its_logger_and_a_dropped_one_is_closed(self):
    logger = self.make()
    logger.update({"m": [config("/a")], "n": [config("/b")]})
    kept = logger.by_model["m"][0]
    dropped = logger.by_model["n"][0]
    logger.update({"m": [config("/a")]})
    self.assertIs(logger.by_model["m"][0], kept)
    self.assertNotIn("n", logger.by_model)
    deadline = time.monotonic() + 10
    while not dropped.collector.closed and time.monotonic() < deadline:
      time.sleep(0.01)
    self.assertTrue(dropped.collector.closed)
    self.assertFalse(kept.collector.closed)

  def test_two_models_with_one_config_share_a_logger(self):
    logger = self.make()
    logger.update({"m": [config("/a")], "n": [config("/a")]})
    self.assertIs(logger.by_model["m"][0], logger.by_model["n"][0])
    self.assertLen(self.created, 1)

  def test_full_queue_drops_and_counts_resource_exhausted(self):
    self.gate = threading.Event()
    logger = self.make()
    logger.update({"m": [config("/a")]})
    # One entry is taken by the (blocked) writer, four fill the queue.
    logger.log("m", lambda: Entry("m"))
    deadline = time.monotonic() + 10
    while logger._writer.queued and time.monotonic() < deadline:  # pylint: disable=protected-access
      time.sleep(0.01)
    start = time.monotonic()
    for _ in range(10):
      logger.log("m", lambda: Entry("m"))
    self.assertLess(time.monotonic() - start, 1.0)  # Never blocks.
    self.assertEqual(self.results, [("m", "RESOURCE_EXHAUSTED")] * 6)
    self.gate.set()
    self.wait_for(11)
    self.assertEqual(self.results.count(("m", "OK")), 5)

  def test_byte_bound_drops_large_entries(self):
    logger = self.make()
    logger.update({"m": [config("/a")]})
    logger.log("m", lambda: Entry("m", nbytes=101))
    self.assertEqual(self.results, [("m", "RESOURCE_EXHAUSTED")])

  def test_failed_write_is_counted_with_its_code_and_serving_goes_on(self):
    self.fail = OSError(28, "No space left on device")
    logger = self.make()
    logger.update({"m": [config("/a")]})
    logger.log("m", lambda: Entry("m"))
    self.wait_for(1)
    self.assertEqual(self.results, [("m", "RESOURCE_EXHAUSTED")])
    self.created[0].fail = OSError(5, "Input/output error")
    logger.log("m", lambda: Entry("m"))
    self.wait_for(2)
    self.assertEqual(self.results[1], ("m", "INTERNAL"))

  def test_stop_writes_what_is_queued_and_closes(self):
    logger = self.make()
    logger.update({"m": [config("/a")]})
    for _ in range(4):
      logger.log("m", lambda: Entry("m"))
    logger.stop()
    self.assertEqual(self.results, [("m", "OK")] * 4)
    self.assertTrue(self.created[0].closed)
    logger.log("m", lambda: Entry("m"))  # After stop: no logger, no entry.
    self.assertLen(self.results, 4)

  def test_tfrecord_collector_end_to_end(self):
    tmp = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    writer = request_log_writer.RequestLogWriter(
        self.queue, lambda *r: self.results.append(r)
    )
    logger = server_request_logger.ServerRequestLogger(
        writer,
        {
            "tfrecord": tfrecord_log_collector.factory(
                tfrecord_log_collector.RotationOptions()
            )
        },
        "worker1",
    )
    logger.update({"m": [config(f"{tmp}/m", kind="tfrecord")]})
    logger.log("m", lambda: Entry("m", b"one"))
    logger.stop()
    (name,) = os.listdir(tmp)
    self.assertStartsWith(name, "m-worker1-")
    (record,) = tfrecord_log_collector.read_records(os.path.join(tmp, name))
    self.assertTrue(record.endswith(b"|one"))


if __name__ == "__main__":
  absltest.main()
