"""Tests for Source/Target wiring and SourceAdapter conversion."""

import unittest

from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id as servable_id_lib
from tensorflow_serving.core import source as source_lib
from tensorflow_serving.core import source_adapter
from tensorflow_serving.core import target as target_lib
from tensorflow_serving.util import status


class UpperAdapter(source_adapter.SourceAdapter[str, str]):

  def convert(self, servable_id, data):
    if data == "bad":
      raise ValueError("cannot convert bad")
    return data.upper()


class FakeSource(source_lib.Source[str]):

  def __init__(self):
    self.callback = None

  def set_aspired_versions_callback(self, callback):
    self.callback = callback


class RecordingTarget(target_lib.Target[str]):

  def __init__(self):
    self.calls = []

  def get_aspired_versions_callback(self):
    return lambda name, versions: self.calls.append((name, list(versions)))


def data(version, value, name="m"):
  return servable_data.ServableData.of(
      servable_id_lib.ServableId(name, version), value
  )


class SourceAdapterTest(unittest.TestCase):

  def test_converts_and_forwards(self):
    adapter = UpperAdapter()
    target = RecordingTarget()
    target_lib.connect_source_to_target(adapter, target)
    adapter.get_aspired_versions_callback()("m", [data(1, "a"), data(2, "b")])
    self.assertEqual(target.calls, [("m", [data(1, "A"), data(2, "B")])])

  def test_conversion_error_fails_only_that_version(self):
    adapter = UpperAdapter()
    target = RecordingTarget()
    target_lib.connect_source_to_target(adapter, target)
    adapter.get_aspired_versions_callback()(
        "m", [data(1, "bad"), data(2, "ok")]
    )
    ((_, versions),) = target.calls
    self.assertFalse(versions[0].ok)
    self.assertEqual(versions[0].error.code, status.Code.UNKNOWN)
    self.assertEqual(versions[0].error.message, "cannot convert bad")
    self.assertEqual(versions[1], data(2, "OK"))

  def test_errors_pass_through_unchanged(self):
    adapter = UpperAdapter()
    target = RecordingTarget()
    target_lib.connect_source_to_target(adapter, target)
    error = status.not_found("no such path")
    failed = servable_data.ServableData.failed(
        servable_id_lib.ServableId("m", 1), error
    )
    adapter.get_aspired_versions_callback()("m", [failed])
    self.assertEqual(target.calls, [("m", [failed])])

  def test_buffers_latest_per_stream_until_connected(self):
    adapter = UpperAdapter()
    callback = adapter.get_aspired_versions_callback()
    callback("m", [data(1, "a")])
    callback("m", [data(2, "b")])
    callback("n", [data(1, "c", name="n")])
    target = RecordingTarget()
    target_lib.connect_source_to_target(adapter, target)
    self.assertEqual(
        sorted(target.calls, key=lambda c: c[0]),
        [("m", [data(2, "B")]), ("n", [data(1, "C", name="n")])],
    )
    callback("m", [])
    self.assertEqual(target.calls[-1], ("m", []))

  def test_chains_after_a_source(self):
    source = FakeSource()
    adapter = UpperAdapter()
    target = RecordingTarget()
    target_lib.connect_source_to_target(source, adapter)
    target_lib.connect_source_to_target(adapter, target)
    source.callback("m", [data(7, "x")])
    self.assertEqual(target.calls, [("m", [data(7, "X")])])

  def test_error_injecting_adapter(self):
    error = status.invalid_argument("No platform found for model m")
    adapter = source_adapter.ErrorInjectingSourceAdapter(error)
    target = RecordingTarget()
    target_lib.connect_source_to_target(adapter, target)
    adapter.get_aspired_versions_callback()("m", [data(1, "/p/1")])
    self.assertEqual(
        target.calls,
        [
            (
                "m",
                [
                    servable_data.ServableData.failed(
                        servable_id_lib.ServableId("m", 1), error
                    )
                ],
            )
        ],
    )


if __name__ == "__main__":
  unittest.main()
