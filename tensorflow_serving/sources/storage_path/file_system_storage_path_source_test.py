"""Tests for FileSystemStoragePathSource."""

from __future__ import annotations

import os
import queue
import threading
import time

from absl.testing import absltest
from absl.testing import parameterized
from google.protobuf import text_format

from tensorflow_serving.core import servable_data
from tensorflow_serving.core import servable_id
from tensorflow_serving.sources.storage_path import (
    file_system_storage_path_source as fssps,
)
from tensorflow_serving.sources.storage_path.storage import file_system
from tensorflow_serving.sources.storage_path.storage import remote_file_system
from tensorflow_serving.sources.storage_path.storage import version_cache
from tensorflow_serving.sources.storage_path.storage.test_util import (
    memory_store,
)
from tensorflow_serving.util import status

Config = fssps.FileSystemStoragePathSourceConfig


def _config(text: str) -> Config:
  return text_format.Parse(text, Config())


class Recorder:
  """Aspired-versions callback that records every call."""

  def __init__(self):
    self.calls: list[tuple[str, list[servable_data.ServableData[str]]]] = []
    self.queue: queue.Queue = queue.Queue()

  def __call__(self, name, versions):
    self.calls.append((name, list(versions)))
    self.queue.put((name, list(versions)))

  def by_name(self) -> dict[str, list[servable_data.ServableData[str]]]:
    return {name: versions for name, versions in self.calls}


class ParseVersionTest(parameterized.TestCase):

  @parameterized.parameters(
      ("1", 1),
      ("0", 0),
      ("123", 123),
      ("00000123", 123),
      ("+5", 5),
      ("-5", -5),
      (" 7", 7),
      ("7\n", 7),
      ("9223372036854775807", 9223372036854775807),
      ("-9223372036854775808", -9223372036854775808),
      ("9223372036854775808", None),
      ("-9223372036854775809", None),
      ("99999999999999999999999", None),
      ("v1", None),
      ("1.0", None),
      ("1e3", None),
      ("0x10", None),
      ("tmp", None),
      ("", None),
      ("-", None),
      ("+", None),
      ("+-1", None),
      ("1 2", None),
      ("1a", None),
      ("\u0661", None),  # ARABIC-INDIC DIGIT ONE is not an ASCII digit.
  )
  def test_parse_version(self, name, expected):
    self.assertEqual(fssps.parse_version(name), expected)

  def test_servable_id_from_version_dir(self):
    self.assertEqual(
        fssps.servable_id_from_version_dir("m", "/models/m/7"),
        servable_id.ServableId("m", 7),
    )
    self.assertEqual(
        fssps.servable_id_from_version_dir("m", "gs://b/m/07/"),
        servable_id.ServableId("m", 7),
    )
    self.assertEqual(
        fssps.servable_id_from_version_dir("m", "3"),
        servable_id.ServableId("m", 3),
    )
    self.assertIsNone(fssps.servable_id_from_version_dir("m", "/models/m/x"))

  def test_join_path(self):
    self.assertEqual(fssps.join_path("/a/b", "1"), "/a/b/1")
    self.assertEqual(fssps.join_path("/a/b/", "1"), "/a/b/1")
    self.assertEqual(fssps.join_path("gs://bucket/m", "1"), "gs://bucket/m/1")


class SourceTestBase(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path

  def make_dirs(self, servable: str, *children: str) -> str:
    base = os.path.join(self.root, servable)
    os.makedirs(base, exist_ok=True)
    for child in children:
      os.makedirs(os.path.join(base, child), exist_ok=True)
    return base

  def make_source(self, config_text: str, fs=None):
    source = fssps.FileSystemStoragePathSource(
        _config(config_text), file_system=fs or fssps.LocalFileSystem()
    )
    self.addCleanup(source.stop)
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    return source, recorder

  def assert_versions(self, versions, name, base, children_by_version):
    self.assertEqual(
        versions,
        [
            servable_data.ServableData.of(
                servable_id.ServableId(name, v), os.path.join(base, child)
            )
            for v, child in children_by_version
        ],
    )


class PolicyTest(SourceTestBase):

  def test_default_policy_is_latest_one(self):
    base = self.make_dirs("m", "1", "3", "2", "tmp", "v4", "1.5")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assertLen(recorder.calls, 1)
    name, versions = recorder.calls[0]
    self.assertEqual(name, "m")
    self.assert_versions(versions, "m", base, [(3, "3")])

  def test_latest_n_highest_first(self):
    base = self.make_dirs("m", "1", "3", "2", "10")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ latest {{ num_versions: 2 }} }} }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(
        recorder.by_name()["m"], "m", base, [(10, "10"), (3, "3")]
    )

  def test_latest_zero_treated_as_one(self):
    base = self.make_dirs("m", "1", "2")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ latest {{ num_versions: 0 }} }} }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(recorder.by_name()["m"], "m", base, [(2, "2")])

  def test_latest_more_than_available(self):
    base = self.make_dirs("m", "1", "2")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ latest {{ num_versions: 5 }} }} }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(
        recorder.by_name()["m"], "m", base, [(2, "2"), (1, "1")]
    )

  def test_all(self):
    base = self.make_dirs("m", "1", "3", "0002", "junk")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ all {{}} }} }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(
        recorder.by_name()["m"], "m", base, [(1, "1"), (2, "0002"), (3, "3")]
    )

  def test_leading_zeros(self):
    base = self.make_dirs("m", "00000123")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(
        recorder.by_name()["m"], "m", base, [(123, "00000123")]
    )

  def test_duplicate_versions_later_name_wins(self):
    base = self.make_dirs("m", "01", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ all {{}} }} }}
        file_system_poll_wait_seconds: -1""")
    with self.assertLogs("absl", level="WARNING") as logs:
      source.poll_once()
    self.assertTrue(
        any(
            "Duplicate version directories detected. Version 1 will be "
            "loaded from 1, 01 will be ignored." in m
            for m in logs.output
        ),
        logs.output,
    )
    self.assert_versions(recorder.by_name()["m"], "m", base, [(1, "1")])

  def test_specific(self):
    base = self.make_dirs("m", "1", "2", "3")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ specific {{ versions: 3 versions: 1 }} }}
        }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(
        recorder.by_name()["m"], "m", base, [(1, "1"), (3, "3")]
    )

  def test_specific_padded_name_found_by_listing(self):
    base = self.make_dirs("m", "007")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ specific {{ versions: 7 }} }} }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assert_versions(recorder.by_name()["m"], "m", base, [(7, "007")])

  def test_specific_missing_version_warns(self):
    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ specific {{ versions: 1 versions: 5 }} }}
        }}
        file_system_poll_wait_seconds: -1""")
    with self.assertLogs("absl", level="WARNING") as logs:
      source.poll_once()
    self.assertIn(
        "Version 5 of servable m, which was requested to be served as a "
        "'specific' version in the servable's version policy, was not found "
        "in the file system",
        "\n".join(logs.output),
    )
    self.assert_versions(recorder.by_name()["m"], "m", base, [(1, "1")])

  def test_specific_empty_list_warns_and_unloads(self):
    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}'
          servable_version_policy {{ specific {{}} }} }}
        file_system_poll_wait_seconds: -1""")
    with self.assertLogs("absl", level="WARNING") as logs:
      source.poll_once()
    self.assertIn(
        "No specific versions requested for servable m.", "\n".join(logs.output)
    )
    self.assertEqual(recorder.by_name()["m"], [])

  def test_uri_join(self):

    class FakeFs(file_system.DirectoryFileSystem):

      def exists(self, path):
        return path == "gs://bucket/m"

      def listdir(self, path):
        # Object stores may list all descendants.
        return ["1/", "1/saved_model.pb", "2/variables/x", "tmp/"]

      def isdir(self, path):
        return True

    source, recorder = self.make_source(
        """servables { servable_name: 'm' base_path: 'gs://bucket/m'
             servable_version_policy { all {} } }
           file_system_poll_wait_seconds: -1""",
        fs=FakeFs(),
    )
    source.poll_once()
    self.assertEqual(
        recorder.by_name()["m"],
        [
            servable_data.ServableData.of(
                servable_id.ServableId("m", 1), "gs://bucket/m/1"
            ),
            servable_data.ServableData.of(
                servable_id.ServableId("m", 2), "gs://bucket/m/2"
            ),
        ],
    )

  def test_default_gfile_file_system(self):
    base = self.make_dirs("m", "4", "5")
    source = fssps.FileSystemStoragePathSource(
        _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                    file_system_poll_wait_seconds: -1""")
    )
    self.addCleanup(source.stop)
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    source.poll_once()
    self.assert_versions(recorder.by_name()["m"], "m", base, [(5, "5")])


class ErrorsAndEmptyTest(SourceTestBase):

  def test_missing_base_path_aborts_round_for_all_servables(self):
    good = self.make_dirs("good", "1")
    missing = os.path.join(self.root, "missing")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'good' base_path: '{good}' }}
        servables {{ servable_name: 'bad' base_path: '{missing}' }}
        file_system_poll_wait_seconds: -1""")
    with self.assertRaises(status.ServingError) as cm:
      source.poll_once()
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertStartsWith(
        cm.exception.message,
        f"Could not find base path {missing} for servable bad with error ",
    )
    self.assertEqual(recorder.calls, [])

  def test_missing_base_path_logged_by_poll_thread(self):
    good = self.make_dirs("good", "1")
    missing = os.path.join(self.root, "missing")
    with self.assertLogs("absl", level="ERROR") as logs:
      source, recorder = self.make_source(f"""
          servables {{ servable_name: 'good' base_path: '{good}' }}
          servables {{ servable_name: 'bad' base_path: '{missing}' }}
          file_system_poll_wait_seconds: 0""")
      source.stop()  # Joins the one-shot thread.
    self.assertIn(
        "FileSystemStoragePathSource encountered a filesystem access error: "
        f"Could not find base path {missing} for servable bad",
        "\n".join(logs.output),
    )
    self.assertEqual(recorder.calls, [])

  def test_listdir_error_aborts_round(self):

    class BrokenFs(fssps.LocalFileSystem):

      def listdir(self, path):
        raise OSError("permission denied")

    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(
        f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1""",
        fs=BrokenFs(),
    )
    with self.assertRaisesRegex(status.ServingError, "permission denied"):
      source.poll_once()
    self.assertEqual(recorder.calls, [])

  def test_no_numeric_children_emits_empty_list_with_warning(self):
    base = self.make_dirs("m", "tmp", "v1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1""")
    with self.assertLogs("absl", level="WARNING") as logs:
      source.poll_once()
    self.assertIn(
        f"No versions of servable m found under base path {base}. Did you "
        "forget to name your leaf directory as a number (eg. '/1/')?",
        "\n".join(logs.output),
    )
    self.assertEqual(recorder.calls, [("m", [])])

  def test_always_present_refuses_to_unload(self):
    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1
        servable_versions_always_present: true""")
    source.poll_once()
    self.assertLen(recorder.calls, 1)
    os.rmdir(os.path.join(base, "1"))
    with self.assertLogs("absl", level="ERROR") as logs:
      source.poll_once()
    self.assertIn(
        "Refusing to unload all versions for Servable: m",
        "\n".join(logs.output),
    )
    self.assertLen(recorder.calls, 1)

  def test_always_present_fails_creation_without_versions(self):
    base = self.make_dirs("m")
    with self.assertRaises(status.ServingError) as cm:
      fssps.FileSystemStoragePathSource(
          _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                      servable_versions_always_present: true"""),
          file_system=fssps.LocalFileSystem(),
      )
    self.assertEqual(cm.exception.code, status.Code.NOT_FOUND)
    self.assertEqual(
        cm.exception.message,
        f"Unable to find a numerical version path for servable m at: {base}",
    )

  def test_fail_if_zero_versions_at_startup(self):
    base = self.make_dirs("m")
    with self.assertRaises(status.ServingError) as cm:
      fssps.FileSystemStoragePathSource(
          _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                      fail_if_zero_versions_at_startup: true"""),
          file_system=fssps.LocalFileSystem(),
      )
    self.assertEqual(cm.exception.code, status.Code.NOT_FOUND)

  def test_poll_once_needs_callback(self):
    source = fssps.FileSystemStoragePathSource(
        _config("file_system_poll_wait_seconds: -1"),
        file_system=fssps.LocalFileSystem(),
    )
    with self.assertRaises(status.ServingError) as cm:
      source.poll_once()
    self.assertEqual(cm.exception.code, status.Code.FAILED_PRECONDITION)


class UpdateConfigTest(SourceTestBase):

  def test_add_and_remove_servables(self):
    a = self.make_dirs("a", "1")
    b = self.make_dirs("b", "2")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'a' base_path: '{a}' }}
        file_system_poll_wait_seconds: -1""")
    source.poll_once()
    self.assertEqual([name for name, _ in recorder.calls], ["a"])

    recorder.calls.clear()
    source.update_config(
        _config(f"""servables {{ servable_name: 'a' base_path: '{a}' }}
                    servables {{ servable_name: 'b' base_path: '{b}' }}
                    file_system_poll_wait_seconds: -1""")
    )
    self.assertEqual(recorder.calls, [])  # Adding emits on the next poll.
    source.poll_once()
    self.assertEqual(sorted(name for name, _ in recorder.calls), ["a", "b"])

    recorder.calls.clear()
    source.update_config(
        _config(f"""servables {{ servable_name: 'b' base_path: '{b}' }}
                    file_system_poll_wait_seconds: -1""")
    )
    # The removed servable is unaspired immediately.
    self.assertEqual(recorder.calls, [("a", [])])
    recorder.calls.clear()
    source.poll_once()
    self.assertEqual([name for name, _ in recorder.calls], ["b"])

  def test_changing_poll_period_rejected_once_polling(self):
    base = self.make_dirs("m", "1")
    source, _ = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: 100""")
    with self.assertRaises(status.ServingError) as cm:
      source.update_config(
          _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                      file_system_poll_wait_seconds: 5""")
      )
    self.assertEqual(cm.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertEqual(
        cm.exception.message,
        "Changing file_system_poll_wait_seconds is not supported",
    )
    # The same period is fine.
    source.update_config(
        _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                    file_system_poll_wait_seconds: 100""")
    )

  def test_config_before_callback_is_fine_to_change(self):
    source = fssps.FileSystemStoragePathSource(
        _config("file_system_poll_wait_seconds: 100"),
        file_system=fssps.LocalFileSystem(),
    )
    self.addCleanup(source.stop)
    source.update_config(_config("file_system_poll_wait_seconds: 3"))
    self.assertEqual(source.config.file_system_poll_wait_seconds, 3)

  def test_update_config_does_not_alias_caller_proto(self):
    base = self.make_dirs("m", "1")
    config = _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                         file_system_poll_wait_seconds: -1""")
    source = fssps.FileSystemStoragePathSource(
        config, file_system=fssps.LocalFileSystem()
    )
    config.ClearField("servables")
    self.assertLen(source.config.servables, 1)


class PollingThreadTest(SourceTestBase):

  def test_periodic_poll_picks_up_new_version(self):
    base = self.make_dirs("m", "1")
    source = fssps.FileSystemStoragePathSource(
        _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                    file_system_poll_wait_seconds: 1"""),
        file_system=fssps.LocalFileSystem(),
    )
    self.addCleanup(source.stop)
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    name, versions = recorder.queue.get(timeout=10)
    self.assertEqual((name, [v.id.version for v in versions]), ("m", [1]))

    os.makedirs(os.path.join(base, "2"))
    deadline = time.monotonic() + 10
    while True:
      name, versions = recorder.queue.get(
          timeout=max(0.01, deadline - time.monotonic())
      )
      if [v.id.version for v in versions] == [2]:
        break
    self.assertEqual(versions[0].data, os.path.join(base, "2"))

  def test_zero_period_polls_exactly_once(self):
    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: 0""")
    recorder.queue.get(timeout=10)
    source.stop()
    self.assertLen(recorder.calls, 1)

  def test_negative_period_never_polls(self):
    base = self.make_dirs("m", "1")
    _, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: -1""")
    time.sleep(0.2)
    self.assertEqual(recorder.calls, [])

  def test_thread_starts_when_callback_set_before_config(self):
    base = self.make_dirs("m", "1")
    source = fssps.FileSystemStoragePathSource(
        file_system=fssps.LocalFileSystem()
    )
    self.addCleanup(source.stop)
    recorder = Recorder()
    source.set_aspired_versions_callback(recorder)
    source.update_config(
        _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                    file_system_poll_wait_seconds: 0""")
    )
    self.assertEqual(recorder.queue.get(timeout=10)[0], "m")

  def test_stop_joins_thread_and_is_idempotent(self):
    base = self.make_dirs("m", "1")
    started = threading.Event()

    def callback(name, versions):
      del name, versions
      started.set()

    source = fssps.FileSystemStoragePathSource(
        _config(f"""servables {{ servable_name: 'm' base_path: '{base}' }}
                    file_system_poll_wait_seconds: 3600"""),
        file_system=fssps.LocalFileSystem(),
    )
    source.set_aspired_versions_callback(callback)
    self.assertTrue(started.wait(10))
    begin = time.monotonic()
    source.stop()
    self.assertLess(time.monotonic() - begin, 5)  # Did not sleep the hour.
    source.stop()
    # No thread is alive after stop.
    self.assertFalse(
        any(
            t.name.startswith("FileSystemStoragePathSource") and t.is_alive()
            for t in threading.enumerate()
        )
    )

  def test_second_callback_ignored(self):
    base = self.make_dirs("m", "1")
    source, recorder = self.make_source(f"""
        servables {{ servable_name: 'm' base_path: '{base}' }}
        file_system_poll_wait_seconds: 3600""")
    recorder.queue.get(timeout=10)
    other = Recorder()
    with self.assertLogs("absl", level="ERROR") as logs:
      source.set_aspired_versions_callback(other)
    self.assertIn(
        "SetAspiredVersionsCallback() called multiple times",
        "\n".join(logs.output),
    )
    source.poll_once()
    self.assertEqual(other.calls, [])
    self.assertLen(recorder.calls, 2)


class RemoteStoreTest(absltest.TestCase):
  """An object-store base path: one listing per poll, versions cached."""

  BASE = "s3://bkt/models/m"

  def setUp(self):
    super().setUp()
    self.store = memory_store.MemoryStore()
    self.cache = version_cache.VersionCache(
        version_cache.CacheOptions(
            root=self.create_tempdir().full_path, download_retries=0
        )
    )
    fs = remote_file_system.RemoteFileSystem(self.store, self.cache)
    self.source = fssps.FileSystemStoragePathSource(
        _config(f"""servables {{ servable_name: 'm' base_path: '{self.BASE}'
                      servable_version_policy {{ latest {{ num_versions: 1 }} }}
                    }}
                    file_system_poll_wait_seconds: -1"""),
        file_system=fs,
    )
    self.addCleanup(self.source.stop)
    self.addCleanup(self.cache.close)
    self.recorder = Recorder()
    self.source.set_aspired_versions_callback(self.recorder)

  def put(self, version: int, **kwargs) -> None:
    memory_store.put_version(self.store, "bkt", "models/m", version, **kwargs)

  def aspired(self) -> list[tuple[int, str]]:
    return [(v.id.version, v.data) for v in self.recorder.calls[-1][1]]

  def test_versions_are_aspired_from_the_cache_after_one_listing(self):
    self.put(1)
    self.source.poll_once()
    local = os.path.join(self.cache.directory, "s3/bkt/models/m/1")
    self.assertEqual(self.aspired(), [(1, local)])
    self.assertEqual(self.store.list_calls, 1)
    reads = self.store.read_calls
    self.source.poll_once()
    self.assertEqual(self.store.list_calls, 2)  # One listing per poll ...
    self.assertEqual(self.store.read_calls, reads)  # ... nothing re-read.

  def test_incomplete_version_waits(self):
    self.put(1)
    self.put(2, complete=False)
    self.source.poll_once()
    self.assertEqual([v for v, _ in self.aspired()], [1])
    self.put(2)
    self.source.poll_once()
    self.assertEqual([v for v, _ in self.aspired()], [2])

  def test_unaspired_version_leaves_the_cache(self):
    self.put(1)
    self.source.poll_once()
    v1 = self.aspired()[0][1]
    self.put(2)
    self.source.poll_once()
    self.assertEqual([v for v, _ in self.aspired()], [2])
    self.assertFalse(os.path.exists(v1))

  def test_failed_download_keeps_previous_versions_and_logs_once(self):
    self.put(1)
    self.source.poll_once()
    self.put(2)
    self.store.fail_reads = [
        memory_store.StoreError("AccessDenied: no read for you")
        for _ in range(2)
    ]
    with self.assertLogs("absl", level="ERROR") as logs:
      self.source.poll_once()
      self.source.poll_once()
    self.assertLen(self.recorder.calls, 1)  # v1 stays aspired.
    errors = [m for m in logs.output if "AccessDenied" in m]
    self.assertLen(errors, 1)
    self.assertIn(
        "Not updating the versions of servable m: AccessDenied: no read for"
        " you",
        errors[0],
    )
    with self.assertLogs("absl", level="INFO") as logs:
      self.source.poll_once()  # The store recovers.
    self.assertEqual([v for v, _ in self.aspired()], [2])
    self.assertIn("Recovered from: Not updating", "\n".join(logs.output))

  def test_missing_bucket_aborts_round(self):
    with self.assertRaisesRegex(status.ServingError, "NoSuchBucket: bkt"):
      self.source.poll_once()
    self.assertEqual(self.recorder.calls, [])


if __name__ == "__main__":
  absltest.main()
