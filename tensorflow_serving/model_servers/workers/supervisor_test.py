"""The supervisor against stand-in workers (test_util/fake_worker.py).

Restarts and their back-off, stopping (and killing a worker that ignores
SIGTERM), a failed start, reload broadcasts and status fan-out; each in a
second or two, since a stand-in starts in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import glob
import json
import os
import signal
import sys
import tempfile
import time
from typing import Any

from absl.testing import absltest

from tensorflow_serving.model_servers.workers import config_broadcast
from tensorflow_serving.model_servers.workers import supervisor
from tensorflow_serving.model_servers.workers.test_util import fake_worker


class _Harness:
  """A supervisor of stand-ins, run on this test's event loop."""

  def __init__(self, behaviour: dict[str, Any] | None = None, **options):
    self.events_dir = tempfile.mkdtemp()
    self.metrics_dir = tempfile.mkdtemp()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env["FAKE_WORKER"] = json.dumps(behaviour or {})
    env["FAKE_EVENTS_DIR"] = self.events_dir
    options.setdefault("num_workers", 2)
    self.supervisor = supervisor.Supervisor(
        supervisor.Options(
            command=[sys.executable, fake_worker.__file__],
            metrics_dir=self.metrics_dir,
            env=env,
            **options,
        )
    )
    self.run: asyncio.Task | None = None

  async def start(self) -> None:
    self.run = asyncio.create_task(self.supervisor.run())
    await self.until(lambda: all(self.supervisor.serving()), "all serving")

  async def until(
      self, predicate: Callable[[], Any], what: str, timeout_s: float = 20.0
  ) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      value = predicate()
      if value:
        return value
      if self.run is not None and self.run.done():
        raise AssertionError(f"supervisor ended waiting for {what}")
      await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")

  def events(self, kind: str | None = None) -> list[dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(os.path.join(self.events_dir, "*.jsonl"))):
      pid = int(os.path.basename(path).split(".")[0])
      with open(path, encoding="utf-8") as f:
        for line in f:
          record = json.loads(line)
          if kind is None or record["event"] == kind:
            out.append({**record, "pid": pid})
    return out


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  # A zombie is dead too; the supervisor reaps its children.
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().split()[2] != "Z"
  except FileNotFoundError:
    return False


class SupervisorTest(absltest.TestCase):

  def test_restarts_a_dead_worker_at_once_then_after_a_delay(self):
    async def scenario():
      h = _Harness(restart_delays_s=(0.0, 1.0), stable_after_s=60.0)
      await h.start()
      first = h.supervisor.pids()
      listens = lambda: [
          e["slots"] for e in h.events("listen") if e["pid"] == first[1]
      ]
      before = len(listens())  # Worker 1 may have served first, adopting 0.
      os.kill(first[0], signal.SIGKILL)
      killed = time.monotonic()
      second = await h.until(
          lambda: h.supervisor.serving()[0]
          and h.supervisor.pids()[0] not in (None, first[0])
          and h.supervisor.pids(),
          "a replacement",
      )
      self.assertLess(time.monotonic() - killed, 5.0)
      self.assertEqual(second[1], first[1])  # The other one never stopped.
      # While slot 0 had no worker, worker 1 accepted on its sockets too; it
      # gave them back once the replacement served.
      await h.until(
          lambda: listens()[before:] == [[1, 0], [1]],
          "worker 1 to adopt slot 0, then give it back",
      )
      # Dying again soon after: the next start waits for the second delay.
      os.kill(second[0], signal.SIGKILL)
      killed = time.monotonic()
      await h.until(
          lambda: h.supervisor.pids()[0] not in (None, second[0]),
          "a second replacement",
      )
      self.assertGreaterEqual(time.monotonic() - killed, 1.0)
      await h.until(lambda: all(h.supervisor.serving()), "serving again")
      # SIGTERM to the supervisor stops every worker; none is restarted.
      pids = h.supervisor.pids()
      os.kill(os.getpid(), signal.SIGTERM)
      self.assertEqual(await asyncio.wait_for(h.run, 10), 0)
      self.assertFalse(any(_alive(p) for p in pids))
      self.assertLen(h.events("stopped"), 2)
      # Every worker wrote its metrics where the supervisor said.
      self.assertEqual(
          {e["metrics_dir"] for e in h.events("hello")}, {h.metrics_dir}
      )

    asyncio.run(scenario())

  def test_a_worker_that_ignores_sigterm_is_killed(self):
    async def scenario():
      h = _Harness({"ignore_sigterm": ["1"]}, stop_timeout_s=1.0)
      await h.start()
      pids = h.supervisor.pids()
      started = time.monotonic()
      h.supervisor.stop()
      self.assertEqual(await asyncio.wait_for(h.run, 10), 0)
      self.assertBetween(time.monotonic() - started, 1.0, 5.0)
      self.assertFalse(any(_alive(p) for p in pids))
      self.assertLen(h.events("sigterm_ignored"), 1)
      self.assertEqual([e["index"] for e in h.events("stopped")], [0])

    asyncio.run(scenario())

  def test_a_worker_failing_before_the_server_served_stops_everything(self):
    async def scenario():
      h = _Harness({"fail_start": {"1": 3}, "start_delay_s": {"0": 5.0}})
      run = asyncio.create_task(h.supervisor.run())
      self.assertEqual(await asyncio.wait_for(run, 10), 3)
      self.assertFalse(any(_alive(e["pid"]) for e in h.events("hello")))
      self.assertEmpty(h.events("ready"))

    asyncio.run(scenario())

  def test_a_reload_reaches_every_worker_and_returns_the_first_error(self):
    async def scenario():
      h = _Harness(
          {
              "apply": {"1": [3, "bad config", True], "2": [9, "late", True]},
              "apply_delay_s": {"0": 0.5},
          },
          num_workers=3,
          restart_delays_s=(0.0,),
      )
      await h.start()
      started = time.monotonic()
      code, message = await h.supervisor.models.reload(b"config 2")
      # It waited for the slowest worker, and reports worker 1's error.
      self.assertGreaterEqual(time.monotonic() - started, 0.5)
      self.assertEqual((code, message), (3, "bad config"))
      self.assertCountEqual(
          [(e["index"], e["config"]) for e in h.events("apply")],
          [(0, "config 2"), (1, "config 2"), (2, "config 2")],
      )
      # The workers took it (a model failed, say): a new one starts with it.
      os.kill(h.supervisor.pids()[2], signal.SIGKILL)
      await h.until(lambda: len(h.events("hello")) == 4, "a restart")
      self.assertEqual(h.events("hello")[-1]["config"], "config 2")
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_config_no_worker_accepted_is_not_kept(self):
    async def scenario():
      h = _Harness(
          {"apply": {"0": [3, "invalid", False], "1": [3, "invalid", False]}},
          initial_config=b"config 1",
          restart_delays_s=(0.0,),
      )
      await h.start()
      self.assertEqual(
          await h.supervisor.models.reload(b"config 2"), (3, "invalid")
      )
      os.kill(h.supervisor.pids()[0], signal.SIGKILL)
      await h.until(lambda: len(h.events("hello")) == 3, "a restart")
      self.assertEqual(
          [e["config"] for e in h.events("hello")], ["config 1"] * 3
      )
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_worker_started_during_a_reload_gets_it_before_it_is_done(self):
    async def scenario():
      # Neither worker has said whether it took the config when worker 1 dies.
      h = _Harness(
          {"apply_delay_s": {"0": 2.0, "1": 1.0}}, restart_delays_s=(0.0,)
      )
      await h.start()
      reload = asyncio.create_task(h.supervisor.models.reload(b"config 2"))
      await asyncio.sleep(0.2)
      os.kill(h.supervisor.pids()[1], signal.SIGKILL)
      self.assertEqual(await reload, (0, ""))
      # The replacement started from the old config and was sent the new one.
      hellos = h.events("hello")
      self.assertLen(hellos, 3)
      self.assertIsNone(hellos[-1]["config"])
      applies = {(e["pid"], e["config"]) for e in h.events("apply")}
      self.assertIn((hellos[-1]["pid"], "config 2"), applies)
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_worker_started_after_a_worker_took_a_change_starts_with_it(self):
    async def scenario():
      # Worker 0 takes it at once and loads its models for 2 s.
      h = _Harness({"load_delay_s": {"0": 2.0}}, restart_delays_s=(0.0,))
      await h.start()
      reload = asyncio.create_task(h.supervisor.models.reload(b"config 2"))
      await h.until(lambda: h.events("apply"), "worker 1 applied")
      os.kill(h.supervisor.pids()[1], signal.SIGKILL)
      self.assertEqual(await reload, (0, ""))
      hellos = h.events("hello")
      self.assertLen(hellos, 3)
      self.assertEqual(hellos[-1]["config"], "config 2")
      # Its hello held the change: it is not sent again.
      self.assertNotIn(hellos[-1]["pid"], [e["pid"] for e in h.events("apply")])
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_loads_and_unloads_reach_every_worker_and_outlive_a_restart(self):
    async def scenario():
      # The whole config's models load slowly; the later load's at once.
      h = _Harness(
          {"load_delay_s": {"0": 1.0, "1": 1.0}},
          initial_config=b"config 1",
          restart_delays_s=(0.0,),
      )
      await h.start()
      models = h.supervisor.models
      load = config_broadcast.Change(config_broadcast.LOAD, b"model b", "b")
      unload = config_broadcast.Change(config_broadcast.UNLOAD, name="a")
      reload = asyncio.create_task(models.reload(b"config 2"))
      await asyncio.sleep(0.1)
      self.assertEqual(await models.apply(load), (0, ""))
      self.assertEqual(await models.apply(unload), (0, ""))
      self.assertEqual(await reload, (0, ""))
      self.assertCountEqual(
          [(e["index"], e["op"], e["name"]) for e in h.events("apply")],
          [
              (i, op, name)
              for i in (0, 1)
              for op, name in (("config", ""), ("load", "b"), ("unload", "a"))
          ],
      )
      # The record holds them in the order they were sent, though the
      # reload finished last: a restarted worker serves config 2, b, not a.
      os.kill(h.supervisor.pids()[0], signal.SIGKILL)
      await h.until(lambda: len(h.events("hello")) == 3, "a restart")
      hello = h.events("hello")[-1]
      self.assertEqual(hello["config"], "config 2")
      self.assertEqual(hello["overrides"], {"b": "model b", "a": None})
      # A polled file keeps them; a whole reload from a worker forgets them.
      self.assertEqual(
          await models.reload(b"config 3", keep_overrides=True), (0, "")
      )
      self.assertEqual(
          models.record,
          config_broadcast.Record(b"config 3", {"b": b"model b", "a": None}),
      )
      self.assertEqual(await models.reload(b"config 4"), (0, ""))
      self.assertEqual(models.record, config_broadcast.Record(b"config 4"))
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_refused_load_is_not_recorded_and_its_error_comes_back(self):
    async def scenario():
      h = _Harness({"apply": {"0": [5, "not served", False]}})
      await h.start()
      unload = config_broadcast.Change(config_broadcast.UNLOAD, name="x")
      self.assertEqual(
          await h.supervisor.models.apply(unload), (5, "not served")
      )
      self.assertEqual(h.supervisor.models.record.overrides, {})
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_reload_past_its_bound_asks_the_workers_what_they_await(self):
    async def scenario():
      h = _Harness({"load_delay_s": {"1": 30.0}})
      await h.start()
      started = time.monotonic()
      code, message = await h.supervisor.models.reload(b"config 2", 0.5)
      # Worker 1 answers the cancel with what it still awaits; worker 0,
      # which applied at once, is not asked.
      self.assertBetween(time.monotonic() - started, 0.5, 3.0)
      self.assertEqual((code, message), (4, "w1 still awaits m"))
      self.assertEqual([e["index"] for e in h.events("cancel_apply")], [1])
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())

  def test_a_worker_that_stops_answering_health_checks_is_replaced(self):
    async def scenario():
      h = _Harness(
          {"ignore_ping": ["1"]},
          health_timeout_s=1.0,
          restart_delays_s=(0.0,),
      )
      with self.assertLogs(level="WARNING") as logs:
        await h.start()
        first = h.supervisor.pids()
        listens = lambda: [
            e["slots"] for e in h.events("listen") if e["pid"] == first[0]
        ]
        # Late by a fifth of the bound: worker 0 takes slot 1's connections.
        await h.until(lambda: [0, 1] in listens(), "worker 0 to adopt slot 1")
        await h.until(
            lambda: h.supervisor.pids()[1] not in (None, first[1]),
            "a replacement",
        )
        self.assertFalse(_alive(first[1]))
        self.assertEqual(h.supervisor.pids()[0], first[0])
        h.supervisor.stop()
        await h.run
      self.assertTrue(
          any(
              f"worker 1 (pid {first[1]}) did not answer a health check "
              "within 1.0 s" in line
              for line in logs.output
          ),
          logs.output,
      )

    asyncio.run(scenario())

  def test_status_reload_and_load_asked_by_a_worker_cover_all(self):
    async def scenario():
      h = _Harness(
          {
              "ask_status": "0",
              "ask_reload": "0",
              "ask_load": "1",
              "start_delay_s": {"0": 0.5},
          }
      )
      await h.start()
      done = await h.until(lambda: h.events("status_done"), "a status")
      self.assertEqual(done[0]["index"], 0)
      self.assertEqual(done[0]["parts"], ["w0", "w1"])
      self.assertEqual(done[0]["replies"], [[0, ""], [0, ""]])
      self.assertEqual(sorted(e["index"] for e in h.events("states")), [0, 1])
      self.assertEqual({e["request"] for e in h.events("states")}, {"model m"})
      done = await h.until(
          lambda: len(h.events("reload_done")) == 2 and h.events("reload_done"),
          "a reload and a load",
      )
      self.assertEqual([e["code"] for e in done], [0, 0])
      applies = [(e["index"], e["op"], e["config"]) for e in h.events("apply")]
      self.assertCountEqual(
          applies,
          [
              (i, op, payload)
              for i in (0, 1)
              for op, payload in (
                  ("config", "config from a worker"),
                  ("load", "model m9"),
              )
          ],
      )
      h.supervisor.stop()
      await h.run

    asyncio.run(scenario())


if __name__ == "__main__":
  absltest.main()
