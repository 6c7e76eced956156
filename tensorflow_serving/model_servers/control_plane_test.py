"""ControlPlane over a ServerCore of fake loaders: bounded, cancellable waits.

A reload naming a model with no version answers within its bound, naming the
model; an abandoned wait leaves no notification behind; a later reload
applies while an earlier one still waits; status (model_view) needs no
request thread. The per-model control API's loads and unloads take the same
path.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time

from absl.testing import absltest

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.core import source_adapter
from tensorflow_serving.core.test_util import fake_loader
from tensorflow_serving.model_servers import control_plane
from tensorflow_serving.model_servers import model_view
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status


class _FakeAdapter(source_adapter.SourceAdapter):

  def convert(self, servable_id, data):
    return fake_loader.FakeLoader(servable=data)


def make_base(*versions: int) -> str:
  base = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
  for version in versions:
    os.makedirs(os.path.join(base, str(version)))
  return base


def config(**models: str) -> model_server_config_pb2.ModelServerConfig:
  """`config(name=base_path, ...)`."""
  result = model_server_config_pb2.ModelServerConfig()
  for name, base in models.items():
    result.model_config_list.config.add(
        name=name, base_path=base, model_platform="tensorflow"
    )
  return result


class ControlPlaneTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    metrics.reset_for_test()
    self.base = make_base(1)
    self.empty = make_base()
    self.core = server_core_lib.ServerCore.create(
        server_core_lib.ServerCoreOptions(
            model_server_config=config(m=self.base),
            platform_adapters={"tensorflow": _FakeAdapter},
            file_system_poll_wait_seconds=1,
            manage_state_interval_s=0.01,
        )
    )
    self.addCleanup(self.core.stop)

  def pending_notifications(self) -> int:
    return len(self.core.monitor._notifications)  # pylint: disable=protected-access

  def test_a_versionless_model_answers_within_the_bound_naming_it(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=0.3)
    started = time.monotonic()
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(control.reload_config(config(m=self.base, g=self.empty)))
    took = time.monotonic() - started
    self.assertEqual(caught.exception.code, status.Code.DEADLINE_EXCEEDED)
    self.assertIn(
        f"g (no version directory found under base path {self.empty})",
        caught.exception.message,
    )
    self.assertIn("within 0.3 s", caught.exception.message)
    self.assertBetween(took, 0.3, 3.0)
    # The config stays applied, as upstream's; nothing waits any more.
    self.assertEqual(
        [m.name for m in self.core.config.model_config_list.config],
        ["m", "g"],
    )
    self.assertEqual(self.pending_notifications(), 0)
    # Its first version appears: it loads with no reload.
    os.makedirs(os.path.join(self.empty, "1"))
    deadline = time.monotonic() + 10
    while "g" not in self.core.monitor.get_available_servable_names():
      self.assertLess(time.monotonic(), deadline)
      time.sleep(0.05)

  def test_the_callers_deadline_is_tighter_than_the_maximum(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=60)
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(
          control.reload_config(
              config(m=self.base, g=self.empty),
              timeout_s=0.2,
          )
      )
    self.assertIn("within 0.2 s", caught.exception.message)

  def test_an_abandoned_wait_is_withdrawn_and_a_later_reload_applies(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=None)
    other = make_base(4)

    async def scenario():
      stuck = asyncio.create_task(
          control.reload_config(config(m=self.base, g=self.empty))
      )
      await asyncio.sleep(0.2)
      self.assertFalse(stuck.done())
      self.assertEqual(self.pending_notifications(), 1)
      # A correcting reload neither waits for it nor is held up by it.
      await asyncio.wait_for(
          control.reload_config(config(m=self.base, o=other)),
          5,
      )
      self.assertFalse(stuck.done())
      stuck.cancel()  # The client went away.
      with self.assertRaises(asyncio.CancelledError):
        await stuck

    asyncio.run(scenario())
    self.assertEqual(self.pending_notifications(), 0)
    self.assertIn("o", self.core.monitor.get_available_servable_names())

  def test_validation_errors_come_back_at_once(self):
    control = control_plane.ControlPlane(self.core)
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(control.reload_config(config(m="relative")))
    self.assertEqual(caught.exception.code, status.Code.INVALID_ARGUMENT)

  def model(self, name: str, base: str) -> model_server_config_pb2.ModelConfig:
    return model_server_config_pb2.ModelConfig(
        name=name, base_path=base, model_platform="tensorflow"
    )

  def test_load_and_unload_apply_on_the_control_thread_and_return_done(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=30)
    threads = []

    def resolve():
      threads.append(threading.current_thread().name)
      return self.model("b", make_base(2))

    asyncio.run(control.load_model(resolve))
    self.assertIn("b", self.core.monitor.get_available_servable_names())
    self.assertLen(threads, 1)
    self.assertStartsWith(threads[0], "control")
    asyncio.run(control.unload_model("b"))
    # Returned once every version of b was unloaded.
    self.assertEqual(
        self.core.monitor.get_live_servable_states().get("b"), None
    )
    self.assertEqual(
        [m.name for m in self.core.config.model_config_list.config], ["m"]
    )
    self.assertEqual(self.pending_notifications(), 0)

  def test_a_versionless_load_answers_within_the_callers_deadline(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=60)
    started = time.monotonic()
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(control.load_model(lambda: self.model("g", self.empty), 0.2))
    self.assertBetween(time.monotonic() - started, 0.2, 3.0)
    self.assertEqual(caught.exception.code, status.Code.DEADLINE_EXCEEDED)
    self.assertIn(
        f"g (no version directory found under base path {self.empty})",
        caught.exception.message,
    )
    # Withdrawn; the model stays configured and loads once it has a version.
    self.assertEqual(self.pending_notifications(), 0)
    self.assertIn(
        "g", [m.name for m in self.core.config.model_config_list.config]
    )

  def test_a_load_and_unload_of_the_server_maximum(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=0.2)
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(control.load_model(lambda: self.model("g", self.empty)))
    self.assertIn("within 0.2 s", caught.exception.message)
    with self.assertRaises(status.ServingError) as caught:
      asyncio.run(control.unload_model("never"))
    self.assertEqual(caught.exception.code, status.Code.NOT_FOUND)

  def test_a_load_is_ordered_after_an_earlier_reload_and_not_held_by_it(self):
    control = control_plane.ControlPlane(self.core, reload_timeout_s=None)

    async def scenario():
      stuck = asyncio.create_task(
          control.reload_config(config(m=self.base, g=self.empty))
      )
      await asyncio.sleep(0.1)
      await asyncio.wait_for(
          control.load_model(lambda: self.model("b", make_base(3))), 5
      )
      self.assertFalse(stuck.done())
      stuck.cancel()
      with self.assertRaises(asyncio.CancelledError):
        await stuck

    asyncio.run(scenario())
    # The load came after the reload: both are in force.
    self.assertEqual(
        [m.name for m in self.core.config.model_config_list.config],
        ["m", "g", "b"],
    )

  def test_status_is_read_on_the_loop(self):
    view = model_view.ModelView(self.core)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "m"
    response = asyncio.run(view.get_model_status(request))
    self.assertEqual(response.model_version_status[0].version, 1)

  def test_every_configured_model_has_a_status_even_with_no_version(self):
    self.core.apply_config(config(m=self.base, e=self.empty)).future.cancel()
    view = model_view.ModelView(self.core)
    statuses = asyncio.run(view.statuses())
    self.assertEqual([name for name, _ in statuses], ["m", "e"])
    self.assertEqual(
        [v.version for v in statuses[0][1].model_version_status], [1]
    )
    self.assertEmpty(statuses[1][1].model_version_status)


if __name__ == "__main__":
  absltest.main()
