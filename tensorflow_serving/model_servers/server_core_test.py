"""ServerCore over fake loaders: config, handles, labels, reload, errors.

The lifecycle pipeline is real (file system source, manager, monitor); only
the platform's loader is fake, so each case runs in well under a second.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.core import source_adapter
from tensorflow_serving.core.test_util import fake_loader
from tensorflow_serving.model_servers import get_model_status_impl
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

ModelServerConfig = model_server_config_pb2.ModelServerConfig


class FakeAdapter(source_adapter.SourceAdapter):
  """Version path -> a FakeLoader serving the path; `bad` fails to load."""

  def convert(self, servable_id, data):
    if os.path.basename(data) == "13":
      return fake_loader.FakeLoader(
          fail_times=float("inf"), error=status.data_loss(f"corrupt {data}")
      )
    return fake_loader.FakeLoader(servable=data)


def make_base(*versions: int) -> str:
  base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
  for version in versions:
    os.makedirs(os.path.join(base, str(version)))
  return base


def config(**models) -> ModelServerConfig:
  """`config(name=(base_path, labels or None, versions or None), ...)`."""
  result = ModelServerConfig()
  for name, (base, labels, versions) in models.items():
    entry = result.model_config_list.config.add(
        name=name, base_path=base, model_platform="tensorflow"
    )
    if versions:
      entry.model_version_policy.specific.versions.extend(versions)
    for label, version in (labels or {}).items():
      entry.version_labels[label] = version
  return result


def spec(name: str, version: int | None = None, label: str = ""):
  result = model_pb2.ModelSpec(name=name)
  if version is not None:
    result.version.value = version
  if label:
    result.version_label = label
  return result


class ServerCoreTest(absltest.TestCase):

  def create(self, model_config: ModelServerConfig, **options):
    core = server_core_lib.ServerCore.create(
        server_core_lib.ServerCoreOptions(
            model_server_config=model_config,
            platform_adapters={"tensorflow": FakeAdapter},
            file_system_poll_wait_seconds=1,
            manage_state_interval_s=0.01,
            max_num_load_retries=0,
            load_retry_interval_s=0,
            **options,
        )
    )
    self.addCleanup(core.stop)
    return core

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()

  def test_latest_version_is_served_and_echoed(self):
    base = make_base(1, 3)
    core = self.create(config(m=(base, None, None)))
    with core.get_servable_handle(spec("m")) as handle:
      self.assertEqual(handle.id.version, 3)
      self.assertEqual(handle.servable, os.path.join(base, "3"))
    with self.assertRaises(status.ServingError) as ctx:
      core.get_servable_handle(spec("m", 1))
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)

  def test_unknown_model_is_upstreams_not_found(self):
    core = self.create(config(m=(make_base(1), None, None)))
    with self.assertRaises(status.ServingError) as ctx:
      core.get_servable_handle(spec("nope"))
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)
    self.assertEqual(
        ctx.exception.message, "Servable not found for request: Latest(nope)"
    )

  def test_labels_resolve_to_their_versions(self):
    base = make_base(1, 2)
    # As upstream, labels are applied before the versions load, so a first
    # config may only name versions still loading with this option.
    core = self.create(
        config(m=(base, {"stable": 1, "canary": 2}, [1, 2])),
        allow_version_labels_for_unavailable_models=True,
    )
    for label, version in (("stable", 1), ("canary", 2)):
      with core.get_servable_handle(spec("m", label=label)) as handle:
        self.assertEqual(handle.id.version, version)
    with self.assertRaises(status.ServingError) as ctx:
      core.get_servable_handle(spec("m", label="nope"))
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)

  def test_reload_adds_and_removes_models(self):
    first, second = make_base(1), make_base(5)
    core = self.create(config(a=(first, None, None)))
    core.reload_config(config(b=(second, None, None)))
    with core.get_servable_handle(spec("b")) as handle:
      self.assertEqual(handle.id.version, 5)
    self.assertEqual(
        [m.name for m in core.config.model_config_list.config], ["b"]
    )

  def test_config_errors_are_upstreams(self):
    core = self.create(config(a=(make_base(1), None, None)))
    relative = config(a=("relative/path", None, None))
    with self.assertRaises(status.ServingError) as ctx:
      core.reload_config(relative)
    self.assertEqual(ctx.exception.code, status.Code.INVALID_ARGUMENT)
    self.assertIn("to have an absolute path or URI", ctx.exception.message)
    twice = config(a=(make_base(1), None, None))
    twice.model_config_list.config.append(twice.model_config_list.config[0])
    with self.assertRaises(status.ServingError) as ctx:
      core.reload_config(twice)
    self.assertIn("multiple times", ctx.exception.message)

  def test_logging_config_installs_a_logger_and_unknown_type_fails(self):
    with_logging = config(a=(make_base(1), None, None))
    logging_config = with_logging.model_config_list.config[0].logging_config
    logging_config.log_collector_config.type = "tfrecord"
    logging_config.log_collector_config.filename_prefix = "/tmp/a"
    logging_config.sampling_config.sampling_rate = 0.5
    core = self.create(with_logging)
    (logger,) = core.request_logger.by_model["a"]
    self.assertEqual(logger.config, logging_config)
    unknown = config(a=(make_base(1), None, None), b=(make_base(2), None, None))
    unknown.model_config_list.config[1].logging_config.CopyFrom(logging_config)
    collector = unknown.model_config_list.config[1].logging_config
    collector.log_collector_config.type = "kafka"
    with self.assertRaises(status.ServingError) as ctx:
      core.reload_config(unknown)
    self.assertEqual(ctx.exception.code, status.Code.NOT_FOUND)
    self.assertEqual(
        ctx.exception.message,
        "Cannot find LogCollector::Factory for type: kafka",
    )
    # The failed config changed nothing: same models, same logger.
    self.assertEqual(
        [m.name for m in core.config.model_config_list.config], ["a"]
    )
    self.assertIs(core.request_logger.by_model["a"][0], logger)

  def test_failed_initial_load_names_the_version_and_error(self):
    with self.assertRaises(status.ServingError) as ctx:
      self.create(config(m=(make_base(13), None, None)))
    self.assertIn(
        "{name: m version: 13} due to error: corrupt", str(ctx.exception)
    )

  def test_load_retries_show_the_last_error_while_loading(self):
    core = server_core_lib.ServerCore(
        server_core_lib.ServerCoreOptions(
            model_server_config=ModelServerConfig(),
            platform_adapters={"tensorflow": FakeAdapter},
            file_system_poll_wait_seconds=1,
            manage_state_interval_s=0.01,
            max_num_load_retries=3,
            load_retry_interval_s=0.5,
        )
    )
    self.addCleanup(core.stop)
    failures = []

    def reload():
      try:
        core.reload_config(config(m=(make_base(13), None, None)))
      except status.ServingError as exc:
        failures.append(exc)

    thread = threading.Thread(target=reload, daemon=True)
    with self.assertLogs("absl", "ERROR"):
      thread.start()
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = "m"
      seen = []
      deadline = time.monotonic() + 30
      while thread.is_alive() and time.monotonic() < deadline:
        try:
          (entry,) = get_model_status_impl.get_model_status(
              core.monitor, request
          ).model_version_status
          seen.append(
              (entry.state, entry.status.error_code, entry.status.error_message)
          )
        except status.ServingError:
          pass  # Not seen by the monitor yet.
        time.sleep(0.02)
      thread.join(30)
    state = get_model_status_pb2.ModelVersionStatus.State
    retrying = [s for s in seen if s[0] == state.LOADING and s[2]]
    self.assertNotEmpty(retrying)
    # Upstream's state and code while retrying; the message says why.
    self.assertEqual(retrying[0][1], status.Code.OK)
    self.assertStartsWith(
        retrying[0][2],
        "Load attempt 1 of 4 failed, retrying in 0.5 s: DATA_LOSS: corrupt ",
    )
    self.assertIn("Load attempt 3 of 4 failed", retrying[-1][2])
    (entry,) = get_model_status_impl.get_model_status(
        core.monitor, request
    ).model_version_status
    self.assertEqual(entry.state, state.END)
    self.assertEqual(entry.status.error_code, status.Code.DATA_LOSS)
    self.assertStartsWith(entry.status.error_message, "corrupt ")
    self.assertLen(failures, 1)
    # Every failed attempt is counted: three retried, then the last.
    self.assertIn(
        ':tensorflow:serving:model_load_failure_count{model_name="m",'
        'status="DATA_LOSS"} 4.0',
        metrics.exposition().decode(),
    )

  # --- Per-model control (the v2 repository API) ------------------------------

  def model(self, name: str, base: str):
    return model_server_config_pb2.ModelConfig(
        name=name, base_path=base, model_platform="tensorflow"
    )

  def served(self, core) -> list[str]:
    return [m.name for m in core.config.model_config_list.config]

  def test_load_and_unload_one_model_keeps_the_others(self):
    core = self.create(config(a=(make_base(1), None, None)))
    core.load_model(self.model("b", make_base(2)), timeout_s=30)
    self.assertEqual(self.served(core), ["a", "b"])
    with core.get_servable_handle(spec("b")) as handle:
      self.assertEqual(handle.id.version, 2)
    core.unload_model("b", timeout_s=30)
    self.assertEqual(self.served(core), ["a"])
    with self.assertRaises(status.ServingError):
      core.get_servable_handle(spec("b"))
    with core.get_servable_handle(spec("a")) as handle:
      self.assertEqual(handle.id.version, 1)
    # Loaded again after its unload (with its last config): the wait sees
    # the new load.
    core.load_model(core.known_model_config("b"), timeout_s=30)
    with core.get_servable_handle(spec("b")) as handle:
      self.assertEqual(handle.id.version, 2)
    self.assertIsNone(core.known_model_config("never"))

  def test_failed_load_and_unknown_unload_report(self):
    core = self.create(config(a=(make_base(1), None, None)))
    with self.assertRaisesRegex(status.ServingError, "corrupt"):
      core.load_model(self.model("b", make_base(13)), timeout_s=30)
    with self.assertRaises(status.ServingError) as cm:
      core.unload_model("nope", timeout_s=1)
    self.assertEqual(cm.exception.code, status.Code.NOT_FOUND)

  def test_load_that_does_not_finish_in_time_is_deadline_exceeded(self):
    core = self.create(config(a=(make_base(1), None, None)))
    with self.assertRaises(status.ServingError) as cm:
      core.load_model(self.model("b", make_base()), timeout_s=0.5)
    self.assertEqual(cm.exception.code, status.Code.DEADLINE_EXCEEDED)

  def test_polled_config_keeps_api_changes_whole_reload_forgets_them(self):
    base_a = make_base(1)
    file_config = config(a=(base_a, None, None))
    core = self.create(file_config)
    core.load_model(self.model("b", make_base(1)), timeout_s=30)
    core.unload_model("a", timeout_s=30)
    core.reload_config(file_config, keep_model_overrides=True)
    self.assertEqual(self.served(core), ["b"])
    core.reload_config(file_config)
    self.assertEqual(self.served(core), ["a"])
    with core.get_servable_handle(spec("a")) as handle:
      self.assertEqual(handle.id.version, 1)

  def test_loaded_versions_gauge_follows_the_lifecycle(self):
    self.create(config(m=(make_base(1, 2), None, [1, 2])))
    text = metrics.exposition().decode()
    self.assertIn(
        ':tensorflow:serving:loaded_versions{model_name="m"} 2.0', text
    )
    # Both versions' load times (beyond upstream), none failed.
    self.assertIn(
        ':tensorflow:serving:model_load_latency_count{model_name="m"} 2.0',
        text,
    )
    self.assertNotIn("model_load_failure_count{", text)


if __name__ == "__main__":
  absltest.main()
