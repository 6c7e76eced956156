"""The --num_workers supervisor: starts the workers, keeps them up, stops them.

It runs no model and imports no TensorFlow, so it starts at once and has
little to crash on. For each of N slots it starts the server binary again
as a worker (same flags, plus a channel to talk back on), restarts one that
dies (at once after a long healthy run, then with growing delays while it
keeps dying), and on SIGTERM or SIGINT asks every worker to stop and kills
those that have not within `stop_timeout_s`. A second signal kills at once.

It holds the listening sockets (sockets.py, one per slot and port) and tells
every serving worker which slots to accept on: its own, and those of slots
whose worker is not serving, so no connection waits for a dead one.

What the workers serve is kept coherent by config_broadcast.py, which
reaches them through this supervisor's channels: it answers their reloads,
per-model loads and unloads and status requests, polls --model_config_file,
and holds the record of the model set a new worker starts with.

It also pings every worker (health_timeout_s): a worker's event loop
answers, so a stopped or wedged worker is killed and replaced, not only a
dead one, and its slot's connections go to the others while it is late.

If a worker fails before the server ever served (a bad flag, a model that
does not load), the supervisor stops the others and exits with its code, as a
single server would have failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import dataclasses
import itertools
import os
import signal
import socket
import subprocess
import time

from absl import logging

from tensorflow_serving.model_servers.workers import channel
from tensorflow_serving.model_servers.workers import config_broadcast
from tensorflow_serving.model_servers.workers import environment
from tensorflow_serving.model_servers.workers import metrics_view
from tensorflow_serving.model_servers.workers import sockets


@dataclasses.dataclass
class Options:
  """How many workers, how to start one, and the supervisor's timings."""

  num_workers: int
  # argv that starts one worker (the binary itself, with the user's flags).
  command: Sequence[str]
  # prometheus_client's multiprocess directory (created and removed by the
  # caller); every worker writes its metrics there.
  metrics_dir: str
  env: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: dict(os.environ)
  )
  # Environment variable -> descriptors every worker inherits.
  inherited_fds: Mapping[str, Sequence[int]] = dataclasses.field(
      default_factory=dict
  )
  # The TCP slot sockets (sockets.py): made to refuse connections while no
  # worker serves, and when stopping.
  tcp_sockets: Sequence[socket.socket] = ()
  # Serialized ModelServerConfig the first workers start with (None: theirs,
  # from the flags).
  initial_config: bytes | None = None
  model_config_file: str = ""
  model_config_file_poll_wait_seconds: int = 0
  # A worker's own grace for requests in flight is 30 s (server.py).
  stop_timeout_s: float = 35.0
  # Delay before the k-th restart in a row of one slot; the last repeats.
  restart_delays_s: Sequence[float] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
  # A worker that served this long before dying starts the delays afresh.
  stable_after_s: float = 30.0
  # How long a GetModelStatus waits for each worker's answer.
  status_timeout_s: float = 5.0
  # A worker that does not answer a health check within this is killed and
  # replaced (0: no checks). One that is late by a fifth of it has its slot's
  # connections taken by the others meanwhile.
  health_timeout_s: float = 10.0


class _Slot:
  """One of the N worker positions, and the process filling it now."""

  def __init__(self, index: int):
    self.index = index
    self.proc: asyncio.subprocess.Process | None = None
    self.writer: asyncio.StreamWriter | None = None
    self.ready = False
    # Slots whose sockets this worker was last told to accept on.
    self.listening: list[int] = []
    self.started_at = 0.0
    self.ready_at: float | None = None
    self.restarts_in_a_row = 0
    # Supervisor-initiated calls awaiting this worker's reply, by id.
    self.pending: dict[int, asyncio.Future] = {}
    self.tasks: set[asyncio.Task] = set()
    self.health: asyncio.Task | None = None
    # Set once the worker's channel thread runs (past its slow imports), from
    # when it answers health checks.
    self.answering = asyncio.Event()

  @property
  def pid(self) -> int | None:
    return self.proc.pid if self.proc else None


class Supervisor:
  """Runs `options.num_workers` workers until asked to stop."""

  def __init__(self, options: Options):
    self._o = options
    self._slots = [_Slot(i) for i in range(options.num_workers)]
    self._ids = itertools.count(1)
    # The workers' model set: changes to it, and what a new worker serves.
    self.models = config_broadcast.ModelConfigBroadcast(
        self, options.initial_config, options.status_timeout_s
    )
    self._stop = asyncio.Event()
    self._kill_now = asyncio.Event()
    self._stopping = False
    self._ever_served = False
    self._all_serving_logged = False
    self._exit_code = 0
    self._tasks: set[asyncio.Task] = set()

  # --- Running ----------------------------------------------------------------

  async def run(self) -> int:
    """Serves until SIGTERM/SIGINT (or a failed start); the exit code."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
      loop.add_signal_handler(sig, self._on_signal, sig)
    try:
      for slot in self._slots:
        if self._stop.is_set():
          break
        await self._spawn(slot)
      if (
          self._o.model_config_file
          and self._o.model_config_file_poll_wait_seconds > 0
      ):
        self._start_task(
            self.models.poll_model_config(
                self._o.model_config_file,
                self._o.model_config_file_poll_wait_seconds,
            )
        )
      await self._stop.wait()
    finally:
      await self._shutdown()
      for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return self._exit_code

  def stop(self) -> None:
    self._stop.set()

  def pids(self) -> list[int | None]:
    """The current worker process ids, by slot (None: being restarted)."""
    return [
        s.pid if s.proc and s.proc.returncode is None else None
        for s in self._slots
    ]

  def serving(self) -> list[bool]:
    return [s.ready for s in self._slots]

  def _on_signal(self, sig: int) -> None:
    if self._stop.is_set():
      logging.warning(
          "%s again: killing the workers now.", signal.Signals(sig).name
      )
      self._kill_now.set()
      return
    logging.info(
        "%s: stopping %d workers.", signal.Signals(sig).name, len(self._slots)
    )
    self._stop.set()

  def _start_task(self, coro, slot: _Slot | None = None) -> asyncio.Task:
    task = asyncio.create_task(coro)
    owner = self._tasks if slot is None else slot.tasks
    owner.add(task)
    task.add_done_callback(owner.discard)
    return task

  async def _spawn(self, slot: _Slot) -> None:
    o = self._o
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(o.env)
    env[environment.WORKER_FD] = str(theirs.fileno())
    env[environment.WORKER_INDEX] = str(slot.index)
    env[environment.NUM_WORKERS] = str(len(self._slots))
    env[environment.METRICS_DIR] = o.metrics_dir
    inherited = [theirs.fileno()]
    for name, fds in o.inherited_fds.items():
      env[name] = ",".join(str(fd) for fd in fds)
      inherited += fds
    try:
      proc = await asyncio.create_subprocess_exec(
          *o.command,
          env=env,
          stdin=subprocess.DEVNULL,
          pass_fds=inherited,
          # Ctrl-C reaches the supervisor alone, which stops them in order; a
          # worker whose supervisor died sees its channel close and stops.
          start_new_session=True,
      )
    finally:
      theirs.close()
    if self._stopping:  # Asked to stop while this one was starting.
      _signal(proc, signal.SIGTERM)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    slot.proc, slot.writer = proc, writer
    slot.ready, slot.ready_at, slot.listening = False, None, [slot.index]
    slot.answering = asyncio.Event()
    slot.started_at = time.monotonic()
    writer.write(channel.encode(*self.models.hello()))
    self.models.worker_started(slot.index)
    logging.info(
        "Started model server worker %d (pid %d).", slot.index, proc.pid
    )
    self._start_task(self._read(slot, proc, reader), slot)
    self._start_task(self._watch(slot, proc), slot)
    if self._o.health_timeout_s > 0:
      slot.health = self._start_task(self._check_health(slot, proc), slot)

  async def _watch(self, slot: _Slot, proc: asyncio.subprocess.Process) -> None:
    code = await proc.wait()
    served_for = (
        time.monotonic() - slot.ready_at if slot.ready_at is not None else None
    )
    self._forget(slot, proc)
    if self._stopping:
      logging.info(
          "Model server worker %d (pid %d) %s.",
          slot.index,
          proc.pid,
          _describe_exit(code),
      )
      return
    if not self._ever_served:
      logging.error(
          "Model server worker %d (pid %d) %s before the server started: "
          "stopping.",
          slot.index,
          proc.pid,
          _describe_exit(code),
      )
      self._exit_code = code if code > 0 else 1
      self._stop.set()
      return
    if served_for is not None and served_for >= self._o.stable_after_s:
      slot.restarts_in_a_row = 0
    delays = self._o.restart_delays_s
    delay = delays[min(slot.restarts_in_a_row, len(delays) - 1)]
    slot.restarts_in_a_row += 1
    logging.warning(
        "Model server worker %d (pid %d) %s; restarting it in %.0f s.",
        slot.index,
        proc.pid,
        _describe_exit(code),
        delay,
    )
    try:
      await asyncio.wait_for(self._stop.wait(), delay)
      return
    except TimeoutError:
      pass
    await self._spawn(slot)

  def _forget(self, slot: _Slot, proc: asyncio.subprocess.Process) -> None:
    """Drops a dead worker: its calls end unanswered, its metrics retire."""
    if slot.proc is proc:
      slot.proc = None
      slot.ready = False
      if slot.writer is not None:
        slot.writer.close()
        slot.writer = None
      for future in slot.pending.values():
        if not future.done():
          future.set_result(None)
      slot.pending.clear()
      if not self._stopping:
        self._rebalance()
    try:
      metrics_view.retire_process(self._o.metrics_dir, proc.pid)
    except OSError as exc:
      logging.warning("Could not fold worker %d's metrics: %s", proc.pid, exc)

  async def _shutdown(self) -> None:
    self._stopping = True
    for task in list(self._tasks):
      task.cancel()
    # A draining worker is not killed for a late health check.
    for slot in self._slots:
      if slot.health is not None:
        slot.health.cancel()
    alive = [
        s.proc for s in self._slots if s.proc and s.proc.returncode is None
    ]
    for proc in alive:
      _signal(proc, signal.SIGTERM)
    # New connections are refused from now on, as by one stopping server.
    for sock in self._o.tcp_sockets:
      sockets.stop_listening(sock)
    if alive:
      waits = [asyncio.ensure_future(p.wait()) for p in alive]
      kill_now = asyncio.ensure_future(self._kill_now.wait())
      await asyncio.wait(
          [asyncio.gather(*waits), kill_now],
          timeout=self._o.stop_timeout_s,
          return_when=asyncio.FIRST_COMPLETED,
      )
      kill_now.cancel()
      for slot in self._slots:
        proc = slot.proc
        if proc is not None and proc.returncode is None:
          logging.warning(
              "Model server worker %d (pid %d) did not stop within %.0f s: "
              "killing it.",
              slot.index,
              proc.pid,
              self._o.stop_timeout_s,
          )
          _signal(proc, signal.SIGKILL)
      await asyncio.gather(*waits)
    for slot in self._slots:
      if slot.tasks:
        await asyncio.gather(*slot.tasks, return_exceptions=True)

  # --- Messages from a worker -----------------------------------------------

  async def _read(
      self,
      slot: _Slot,
      proc: asyncio.subprocess.Process,
      reader: asyncio.StreamReader,
  ) -> None:
    while True:
      try:
        message = await channel.read(reader)
      except channel.ChannelError as exc:
        logging.error("Bad message from worker %d: %s", slot.index, exc)
        message = None
      if message is None or slot.proc is not proc:
        return
      header, payload = message
      kind = header["type"]
      if kind == "started":
        slot.answering.set()
      elif kind == "ready":
        slot.answering.set()
        self._on_ready(slot)
      elif kind in ("applied", "states", "pong"):
        future = slot.pending.pop(header.get("id"), None)
        if future is not None and not future.done():
          future.set_result((header, payload))
      elif kind == "accepted":
        self.models.accepted(header)
      elif kind in ("reload", "status"):
        answer = (
            self.models.answer_change
            if kind == "reload"
            else self.models.answer_status
        )
        self._start_task(answer(header, payload, self._replier(slot, proc)))
      else:
        logging.warning("Unexpected %r from worker %d", kind, slot.index)

  def _rebalance(self) -> None:
    """Every slot's sockets accepted on: by its worker, else by all serving.

    A slot without a serving worker (dead, or still loading) would leave the
    connections the kernel queues on its sockets waiting; while no worker at
    all serves, connections are refused, as by a server that is down.
    """
    serving = [s for s in self._slots if s.ready]
    if not serving:
      for sock in self._o.tcp_sockets:
        sockets.stop_listening(sock)
      return
    orphans = [s.index for s in self._slots if not s.ready]
    for slot in serving:
      wanted = [slot.index, *orphans]
      if wanted != slot.listening:
        slot.listening = wanted
        self._send(slot, slot.proc, {"type": "listen", "slots": wanted})

  def _on_ready(self, slot: _Slot) -> None:
    slot.ready = True
    slot.ready_at = time.monotonic()
    self._rebalance()
    logging.info(
        "Model server worker %d (pid %d) is serving.", slot.index, slot.pid
    )
    self._ever_served = True
    if not self._all_serving_logged and all(s.ready for s in self._slots):
      self._all_serving_logged = True
      logging.info("All %d model server workers are serving.", len(self._slots))

  def _send(
      self,
      slot: _Slot,
      proc: asyncio.subprocess.Process,
      header: channel.Header,
      payload: bytes = b"",
  ) -> None:
    if slot.proc is proc and slot.writer is not None:
      slot.writer.write(channel.encode(header, payload))

  # --- config_broadcast.Workers ----------------------------------------------

  def live_slots(self) -> list[int]:
    return [s.index for s in self._slots if s.writer is not None]

  def serving_slots(self) -> list[int]:
    return [s.index for s in self._slots if s.ready and s.writer is not None]

  def call_worker(
      self, index: int, header: channel.Header, payload: bytes
  ) -> tuple[int, asyncio.Future]:
    return self._call(self._slots[index], header, payload)

  def tell_worker(self, index: int, header: channel.Header) -> None:
    slot = self._slots[index]
    self._send(slot, slot.proc, header)

  def _replier(
      self, slot: _Slot, proc: asyncio.subprocess.Process
  ) -> config_broadcast.Reply:
    """Answers this process (not a replacement in its slot)."""
    return lambda header, payload: self._send(slot, proc, header, payload)

  def _call(
      self, slot: _Slot, header: channel.Header, payload: bytes
  ) -> tuple[int, asyncio.Future]:
    """Asks a worker; the future ends with (header, payload), None if it died.

    Returns the call's id with it (to cancel it, or withdraw it).
    """
    future = asyncio.get_running_loop().create_future()
    call_id = next(self._ids)
    if slot.writer is None:
      future.set_result(None)
      return call_id, future
    slot.pending[call_id] = future
    slot.writer.write(channel.encode({**header, "id": call_id}, payload))
    return call_id, future

  # --- Health -----------------------------------------------------------------

  async def _check_health(
      self, slot: _Slot, proc: asyncio.subprocess.Process
  ) -> None:
    """Pings the worker; one that stops answering is killed and replaced.

    The answer comes from the worker's event loop once it serves, so a
    stopped (SIGSTOP) or wedged process is caught, not just a dead one.
    """
    timeout = self._o.health_timeout_s
    late = timeout / 5
    await slot.answering.wait()
    while slot.proc is proc and proc.returncode is None:
      await asyncio.sleep(late)
      call_id, pong = self._call(slot, {"type": "ping"}, b"")
      done, _ = await asyncio.wait([pong], timeout=late)
      taken_over = False
      if not done and slot.ready and slot.proc is proc:
        # Its slot's connections go to the others while it is late.
        taken_over = True
        slot.ready = False
        self._rebalance()
        logging.warning(
            "Model server worker %d (pid %d) has not answered a health "
            "check for %.1f s: the other workers accept its connections "
            "meanwhile.",
            slot.index,
            proc.pid,
            late,
        )
      if not done:
        done, _ = await asyncio.wait([pong], timeout=timeout - late)
      slot.pending.pop(call_id, None)
      if slot.proc is not proc or proc.returncode is not None:
        return
      if not done:
        logging.error(
            "Model server worker %d (pid %d) did not answer a health check "
            "within %.1f s (stopped or stalled): killing it; it will be "
            "replaced.",
            slot.index,
            proc.pid,
            timeout,
        )
        _signal(proc, signal.SIGKILL)
        return
      if taken_over:
        self._on_ready(slot)


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
  try:
    proc.send_signal(sig)
  except ProcessLookupError:
    pass


def _describe_exit(code: int) -> str:
  if code < 0:
    try:
      return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
      return f"was killed by signal {-code}"
  return f"exited with code {code}"
