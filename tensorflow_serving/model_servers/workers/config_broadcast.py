"""The workers' one model set: changes broadcast to all, and their record.

The supervisor (supervisor.py) keeps the worker processes up; this module
keeps what they serve coherent, through their channels:

- a change (a worker's HandleReloadConfigRequest, a new read of
  --model_config_file, a model loaded or unloaded through the per-model
  control API) goes to every live worker, the first error comes back, and
  the call ends when all of them answered or its bound passed (then the
  workers still waiting for its models are told to stop and say what they
  awaited); changes are sent in arrival order and none waits for an
  earlier one's models;
- the record of what a worker starting now must serve: the newest whole
  config any worker accepted, and the control API's loads and unloads since
  (a polled file keeps them, a HandleReloadConfigRequest forgets them, as in
  one server's ServerCore). A change enters the record when the first worker
  reports whether it took it, which every worker does in the order the
  changes were sent, so the record follows that order even when a later
  change's models load first. A worker (re)started later starts with the
  record; one started while a change is still undecided also gets the
  change before it serves;
- a GetModelStatus is asked of every serving worker and the answers merged
  (model_status.py) by the worker that was asked.

Payloads are serialized protos this module never parses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import dataclasses
from typing import Protocol

from absl import logging

from tensorflow_serving.model_servers import model_config
from tensorflow_serving.model_servers.workers import channel

_OK = 0
_INVALID_ARGUMENT = 3
_DEADLINE_EXCEEDED = 4
_UNAVAILABLE = 14
# How long workers get to answer a change's cancel_apply.
_CANCEL_ANSWER_S = 2.0

# What a change does (the "op" of its messages).
CONFIG = "config"  # A whole ModelServerConfig.
LOAD = "load"  # One ModelConfig, added or replacing that model's.
UNLOAD = "unload"  # One model, by name.
OPS = (CONFIG, LOAD, UNLOAD)

Reply = Callable[[channel.Header, bytes], None]


class Workers(Protocol):
  """The supervisor's workers, as this module reaches them."""

  def live_slots(self) -> Sequence[int]:
    """Slots whose worker has a channel (serving or still starting)."""
    ...

  def serving_slots(self) -> Sequence[int]:
    """Slots whose worker serves."""
    ...

  def call_worker(
      self, index: int, header: channel.Header, payload: bytes
  ) -> tuple[int, asyncio.Future]:
    """Asks slot `index`'s worker; the future ends with its reply (None: it
    died)."""
    ...

  def tell_worker(self, index: int, header: channel.Header) -> None:
    """Tells slot `index`'s worker, expecting no reply."""
    ...


@dataclasses.dataclass(frozen=True)
class Change:
  """One change to the model set, as sent to each worker."""

  op: str
  payload: bytes = b""
  # The model a LOAD or UNLOAD names.
  name: str = ""
  # A CONFIG from a polled file keeps the control API's changes.
  keep_overrides: bool = False

  def header(self) -> channel.Header:
    return {
        "type": "apply",
        "op": self.op,
        "name": self.name,
        "keep_overrides": self.keep_overrides,
    }


@dataclasses.dataclass
class Record:
  """What a worker starting now serves: a whole config and changes on top."""

  # Serialized ModelServerConfig (None: the workers' flags say).
  config: bytes | None = None
  # Model name -> its serialized ModelConfig, or None: unloaded.
  overrides: dict[str, bytes | None] = dataclasses.field(default_factory=dict)

  def take(self, change: Change) -> None:
    if change.op == CONFIG:
      self.config = change.payload
      if not change.keep_overrides:
        self.overrides.clear()
    elif change.op == LOAD:
      self.overrides[change.name] = change.payload
    elif change.op == UNLOAD:
      self.overrides[change.name] = None

  def hello(self) -> tuple[channel.Header, bytes]:
    """The first message to a new worker (read back by `read_hello`)."""
    loaded = {n: m for n, m in self.overrides.items() if m is not None}
    parts = [self.config or b"", *loaded.values()]
    sizes, payload = channel.join(parts)
    return {
        "type": "hello",
        "has_config": self.config is not None,
        "loaded": list(loaded),
        "unloaded": [n for n, m in self.overrides.items() if m is None],
        "sizes": sizes,
    }, payload


def read_hello(header: channel.Header, payload: bytes) -> Record:
  """The record a hello carries."""
  parts = channel.split(header.get("sizes", [len(payload)]), payload)
  record = Record(parts[0] if header["has_config"] else None)
  for name, model in zip(header.get("loaded", []), parts[1:]):
    record.overrides[name] = model
  for name in header.get("unloaded", []):
    record.overrides[name] = None
  return record


class _Broadcast:
  """A change on its way to every worker; new workers are added as they start."""

  def __init__(self, change: Change):
    self.change = change
    # Whether it entered the record (or was refused): settled by the first
    # worker to say whether it took it.
    self.decided = False
    # Slot index -> (the apply's call id, its reply).
    self.replies: dict[int, tuple[int, asyncio.Future]] = {}
    self.changed = asyncio.Event()


class ModelConfigBroadcast:
  """Applies changes in every worker and keeps the record new workers get."""

  def __init__(
      self,
      workers: Workers,
      initial_config: bytes | None,
      status_timeout_s: float,
  ):
    self._workers = workers
    self.record = Record(initial_config)
    self._status_timeout_s = status_timeout_s
    # Changes in flight, oldest first. Each worker applies them in the order
    # they were sent (one channel, one apply thread), so none waits for an
    # earlier one's models.
    self._broadcasts: list[_Broadcast] = []
    # An apply's call id -> its broadcast, until the broadcast ends.
    self._by_call: dict[int, _Broadcast] = {}

  # --- Workers starting -------------------------------------------------------

  def hello(self) -> tuple[channel.Header, bytes]:
    return self.record.hello()

  def worker_started(self, index: int) -> None:
    """Sends a new worker the changes its hello's record does not hold."""
    for broadcast in self._broadcasts:
      if not broadcast.decided:
        self._add(broadcast, index)

  def _add(self, broadcast: _Broadcast, index: int) -> None:
    call_id, reply = self._workers.call_worker(
        index, broadcast.change.header(), broadcast.change.payload
    )
    broadcast.replies[index] = (call_id, reply)
    self._by_call[call_id] = broadcast
    broadcast.changed.set()

  def accepted(self, header: channel.Header) -> None:
    """A worker applied a change (it is in force there) or refused it."""
    broadcast = self._by_call.get(header.get("id"))
    if broadcast is not None and not broadcast.decided:
      self._decide(broadcast, bool(header.get("in_force")))

  def _decide(self, broadcast: _Broadcast, in_force: bool) -> None:
    broadcast.decided = True
    if in_force:
      self.record.take(broadcast.change)

  # --- Changes ----------------------------------------------------------------

  async def reload(
      self,
      payload: bytes,
      timeout_s: float | None = None,
      keep_overrides: bool = False,
  ) -> tuple[int, str]:
    """Applies a serialized ModelServerConfig in every worker."""
    return await self.apply(
        Change(CONFIG, payload, keep_overrides=keep_overrides), timeout_s
    )

  async def apply(
      self, change: Change, timeout_s: float | None = None
  ) -> tuple[int, str]:
    """Applies `change` in every worker; returns (code, message).

    The code is the first error by worker index, else OK. A worker that dies
    meanwhile is not waited for: its replacement starts with the change if
    any worker took it. Past `timeout_s` the workers are told to stop
    waiting for the change's models, and say which they awaited.
    """
    broadcast = _Broadcast(change)
    self._broadcasts.append(broadcast)
    loop = asyncio.get_running_loop()
    deadline = None if timeout_s is None else loop.time() + timeout_s
    try:
      for index in self._workers.live_slots():
        self._add(broadcast, index)
      timed_out = not await self._replies(broadcast, deadline)
      if timed_out:
        # Each worker answers a cancel at once with what it still awaits.
        for index, (call_id, future) in broadcast.replies.items():
          if not future.done():
            self._workers.tell_worker(
                index,
                {"type": "cancel_apply", "id": call_id, "timeout_s": timeout_s},
            )
        await self._replies(broadcast, loop.time() + _CANCEL_ANSWER_S)
    finally:
      self._broadcasts.remove(broadcast)
      for call_id, _ in broadcast.replies.values():
        self._by_call.pop(call_id, None)
    replies = []
    for index in sorted(broadcast.replies):
      future = broadcast.replies[index][1]
      if future.done() and future.result() is not None:
        replies.append(future.result()[0])
    if not broadcast.decided:
      # No worker said so as it applied (all died, or none answered in time):
      # their final answers decide.
      self._decide(broadcast, any(r.get("applied") for r in replies))
    for reply in replies:
      if reply.get("code"):
        return int(reply["code"]), str(reply.get("message", ""))
    if timed_out:
      return _DEADLINE_EXCEEDED, (
          f"The model server workers did not answer within {timeout_s:g} s."
      )
    if not replies:
      return _UNAVAILABLE, "No model server worker could apply the change."
    return _OK, ""

  async def _replies(
      self, broadcast: _Broadcast, deadline: float | None
  ) -> bool:
    """Waits until every worker asked answered; False at the deadline."""
    loop = asyncio.get_running_loop()
    while True:
      pending = [f for _, f in broadcast.replies.values() if not f.done()]
      if not pending:
        return True
      remaining = None if deadline is None else deadline - loop.time()
      if remaining is not None and remaining <= 0:
        return False
      broadcast.changed.clear()
      changed = asyncio.ensure_future(broadcast.changed.wait())
      await asyncio.wait(
          [*pending, changed],
          timeout=remaining,
          return_when=asyncio.FIRST_COMPLETED,
      )
      changed.cancel()

  async def answer_change(
      self, header: channel.Header, payload: bytes, reply: Reply
  ) -> None:
    """A worker's request to change every worker's model set."""
    op = header.get("op", CONFIG)
    if op not in OPS:
      code, message = _INVALID_ARGUMENT, f"Unknown model set change {op!r}"
    else:
      code, message = await self.apply(
          Change(op, payload, name=str(header.get("name", ""))),
          header.get("timeout_s"),
      )
    reply(
        {
            "type": "reload_done",
            "id": header["id"],
            "code": code,
            "message": message,
        },
        b"",
    )

  async def poll_model_config(self, path: str, period: float) -> None:
    """Re-reads --model_config_file for every worker, as one server does.

    As there, each poll waits for its new models one period at most and
    reports a model still awaited once (server.py), and keeps what the
    per-model control API changed.
    """
    loop = asyncio.get_running_loop()
    reported = ""
    while True:
      await asyncio.sleep(period)
      try:
        config = await loop.run_in_executor(
            None, model_config.parse_model_server_config, path
        )
      except (OSError, model_config.ConfigError) as exc:
        logging.error("Failed to read ModelServerConfig file: %s", exc)
        continue
      code, message = await self.reload(
          config.SerializeToString(), period, keep_overrides=True
      )
      if code == _OK:
        reported = ""
      elif code != _DEADLINE_EXCEEDED:
        logging.error(
            "PollFilesystemAndReloadConfig failed to ReloadConfig: %s", message
        )
      elif message != reported:
        reported = message
        logging.warning("Polling %s goes on meanwhile: %s", path, message)

  # --- Status -----------------------------------------------------------------

  async def answer_status(
      self, header: channel.Header, payload: bytes, reply: Reply
  ) -> None:
    """A worker's GetModelStatus, asked of every serving worker."""
    asked = {
        index: self._workers.call_worker(index, {"type": "states"}, payload)[1]
        for index in self._workers.serving_slots()
    }
    if asked:
      await asyncio.wait(asked.values(), timeout=self._status_timeout_s)
    replies, parts = [], []
    for index in sorted(asked):
      future = asked[index]
      if not future.done():
        logging.warning("Worker %d did not answer GetModelStatus.", index)
        future.cancel()
        continue
      if future.result() is None:
        continue
      answer, body = future.result()
      replies.append(
          [int(answer.get("code", 0)), str(answer.get("message", ""))]
      )
      parts.append(body)
    sizes, blob = channel.join(parts)
    reply(
        {
            "type": "status_done",
            "id": header["id"],
            "replies": replies,
            "sizes": sizes,
        },
        blob,
    )
