"""One worker process of --num_workers: a whole server that answers to a supervisor.

A worker is the single-process server (its own ServerCore, models, batcher
and event loop) with four differences:

- it binds no port: it accepts on the sockets the supervisor bound
  (sockets.py), on its own slot's and, while other slots have no serving
  worker, on theirs too;
- HandleReloadConfigRequest, the per-model control API's loads and unloads,
  and GetModelStatus go through the supervisor to every worker
  (config_broadcast.py, model_status.py), and --model_config_file is polled
  by the supervisor for all of them;
- a Prometheus scrape on any worker sums every worker's values
  (metrics_view.py);
- TensorFlow's thread pools and the request pool are sized for its share of
  the machine, unless their flags were given.

Its channel is served by a thread of its own, not the event loop, so
applying a config and answering the supervisor never wait on request
traffic; a reload's wait for its models holds no thread at all (a monitor
notification), and health checks are answered by the event loop, so that a
loop that stopped turning gets the worker replaced. When the channel closes,
the supervisor is gone and the worker stops as if sent SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
import concurrent.futures
import itertools
import os
import queue
import signal
import socket
import threading
from typing import Any

from absl import logging
from google.protobuf import text_format
from tensorflow.core.protobuf import config_pb2

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.model_servers import get_model_status_impl
from tensorflow_serving.model_servers import server_core as server_core_lib
from tensorflow_serving.model_servers import server_options
from tensorflow_serving.model_servers.workers import channel
from tensorflow_serving.model_servers.workers import config_broadcast
from tensorflow_serving.model_servers.workers import environment
from tensorflow_serving.model_servers.workers import metrics_view
from tensorflow_serving.model_servers.workers import model_status
from tensorflow_serving.util import config_protos
from tensorflow_serving.util import metrics
from tensorflow_serving.util import status

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig
Overrides = dict[str, ModelConfig | None]
# A GetModelStatus asks every worker, each within the supervisor's 5 s.
_STATUS_TIMEOUT_S = 30.0
# What a reload's answer may take beyond its bound (the supervisor's round
# trip, and the workers' answers to its cancel).
_CHANNEL_SLACK_S = 5.0
_PARALLELISM_FLAGS = (
    "tensorflow_session_parallelism",
    "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism",
)


class WorkerContext:
  """This worker's channel to the supervisor; server.WorkerHooks for Server."""

  def __init__(
      self,
      sock: socket.socket,
      index: int,
      count: int,
      listeners: Mapping[str, Sequence[int]],
  ):
    self.index = index
    self.count = count
    self._sock = sock
    # API ("grpc", "rest", "unix") -> inherited fds, one per slot (TCP).
    self._fds = listeners
    # What this process accepts on now: (api, slot) -> its socket (a dup).
    self._listening: dict[tuple[str, int], socket.socket] = {}
    self._server: Any = None  # server.Server, once it serves.
    self._loop: asyncio.AbstractEventLoop | None = None
    self._listen_lock: asyncio.Lock | None = None
    self._send_lock = threading.Lock()
    self._ids = itertools.count(1)
    self._calls: dict[int, concurrent.futures.Future] = {}
    self._calls_lock = threading.Lock()
    self._closed = False
    # Applies run one at a time, in order, on their own thread (validating
    # and swapping sources can touch the file system).
    self._core: server_core_lib.ServerCore | None = None
    self._core_lock = threading.Lock()
    self._queued: list[tuple[channel.Header, bytes]] = []
    self._applies: queue.Queue = queue.Queue()
    # Applied changes whose models are still awaited (loaded, or unloaded),
    # by call id; and the answer for those the supervisor gave up on.
    self._waits: dict[
        int, server_core_lib.ConfigWait | server_core_lib.UnloadWait
    ] = {}
    self._gave_up: dict[int, status.ServingError] = {}
    self._waits_lock = threading.Lock()

  @classmethod
  def from_environment(cls) -> WorkerContext:
    env = os.environ

    def fds(name: str) -> list[int]:
      return [int(fd) for fd in env.get(name, "").split(",") if fd]

    return cls(
        socket.socket(fileno=int(env[environment.WORKER_FD])),
        int(env.get(environment.WORKER_INDEX, "0")),
        int(env.get(environment.NUM_WORKERS, "1")),
        {
            "grpc": fds(environment.GRPC_FDS),
            "rest": fds(environment.REST_FDS),
            "unix": fds(environment.UNIX_SOCKET_FD),
        },
    )

  def receive_hello(self) -> tuple[ModelServerConfig | None, Overrides]:
    """What to serve, sent before anything: the config (None: the flags'),
    and the per-model control API's changes on top of it."""
    message = channel.read_blocking(self._sock)
    if message is None or message[0]["type"] != "hello":
      raise channel.ChannelError("the supervisor sent no hello")
    record = config_broadcast.read_hello(*message)
    config = (
        None
        if record.config is None
        else ModelServerConfig.FromString(record.config)
    )
    overrides = {
        name: None if model is None else ModelConfig.FromString(model)
        for name, model in record.overrides.items()
    }
    return config, overrides

  def start(self) -> None:
    threading.Thread(
        target=self._read_loop, name="worker_channel", daemon=True
    ).start()
    # From now on this process answers the supervisor's health checks.
    self._send({"type": "started"})
    threading.Thread(
        target=self._apply_loop, name="worker_apply", daemon=True
    ).start()

  # --- server.WorkerHooks -----------------------------------------------------

  def management(self, core: server_core_lib.ServerCore) -> _Management:
    """Attaches the loaded core; applies what came meanwhile, then returns.

    Called before the server listens, so a worker started during a reload
    never serves the config it was started with.
    """
    with self._core_lock:
      self._core = core
      drained = [self._enqueue_apply(h, p) for h, p in self._queued]
      self._queued.clear()
    concurrent.futures.wait(drained)
    return _Management(self)

  async def serving(self, server: Any) -> None:
    """Accepts on its own slot (and the UNIX socket), then says it serves."""
    self._server = server
    self._listen_lock = asyncio.Lock()
    self._loop = asyncio.get_running_loop()
    if self._fds["unix"]:
      sock = socket.socket(fileno=os.dup(self._fds["unix"][0]))
      await server.listen("grpc", sock)
    await self._listen_on([self.index])
    self._send({"type": "ready"})

  async def _listen_on(self, slots: Sequence[int]) -> None:
    """Accepts on exactly these slots' TCP sockets (its own among them)."""
    assert self._listen_lock is not None
    async with self._listen_lock:
      await self._reconcile({self.index, *slots})

  async def _reconcile(self, slots: set[int]) -> None:
    wanted = {
        (api, slot)
        for api in ("grpc", "rest")
        for slot in slots
        if slot < len(self._fds[api])
    }
    for key in sorted(set(self._listening) - wanted):
      self._server.unlisten(key[0], self._listening.pop(key))
    for api, slot in sorted(wanted - set(self._listening)):
      # A dup: closing a listener must leave the inherited fd to reuse.
      sock = socket.socket(fileno=os.dup(self._fds[api][slot]))
      self._listening[(api, slot)] = sock
      await self._server.listen(api, sock)

  # --- Calls to the supervisor ------------------------------------------------

  def call(
      self, header: channel.Header, payload: bytes
  ) -> tuple[int, concurrent.futures.Future]:
    """Sends a request; its reply completes the future (from any thread)."""
    future: concurrent.futures.Future = concurrent.futures.Future()
    with self._calls_lock:
      if self._closed:
        raise status.unavailable("The model server supervisor is gone.")
      call_id = next(self._ids)
      self._calls[call_id] = future
    self._send({**header, "id": call_id}, payload)
    return call_id, future

  async def call_async(
      self, header: channel.Header, payload: bytes, timeout_s: float | None
  ) -> tuple[channel.Header, bytes]:
    """`call` awaited on the event loop, holding no thread, within a bound."""
    call_id, future = self.call(header, payload)
    try:
      return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
      raise status.deadline_exceeded(
          "No answer from the other model server workers in "
          f"{timeout_s:.0f} s"
      ) from None
    finally:
      with self._calls_lock:
        self._calls.pop(call_id, None)

  def _send(self, header: channel.Header, payload: bytes = b"") -> None:
    data = channel.encode(header, payload)
    with self._send_lock:
      try:
        self._sock.sendall(data)
      except OSError as exc:
        logging.error("Cannot reach the model server supervisor: %s", exc)

  # --- Requests from the supervisor -----------------------------------------

  def _read_loop(self) -> None:
    while True:
      try:
        message = channel.read_blocking(self._sock)
      except (OSError, channel.ChannelError) as exc:
        logging.error("Model server supervisor channel failed: %s", exc)
        message = None
      if message is None:
        self._lost_supervisor()
        return
      header, payload = message
      kind = header["type"]
      if kind in ("reload_done", "status_done"):
        with self._calls_lock:
          future = self._calls.pop(header.get("id"), None)
        if future is not None:
          future.set_result((header, payload))
      elif kind == "apply":
        with self._core_lock:
          if self._core is None:
            self._queued.append((header, payload))
          else:
            self._enqueue_apply(header, payload)
      elif kind == "cancel_apply":
        self._cancel_apply(header["id"], header.get("timeout_s"))
      elif kind == "ping":
        self._pong(header["id"])
      elif kind == "states":
        self._answer_states(header["id"], payload)
      elif kind == "listen" and self._loop is not None:
        asyncio.run_coroutine_threadsafe(
            self._listen_on(header["slots"]), self._loop
        )
      else:
        logging.warning("Unexpected %r from the supervisor", kind)

  def _lost_supervisor(self) -> None:
    with self._calls_lock:
      self._closed = True
      calls, self._calls = self._calls, {}
    for future in calls.values():
      future.set_exception(
          status.unavailable("The model server supervisor is gone.")
      )
    logging.error("The model server supervisor is gone: stopping.")
    os.kill(os.getpid(), signal.SIGTERM)

  def _enqueue_apply(self, header: channel.Header, payload: bytes):
    done: concurrent.futures.Future = concurrent.futures.Future()
    self._applies.put((header, payload, done))
    return done

  def _apply_loop(self) -> None:
    while True:
      header, payload, done = self._applies.get()
      try:
        self._apply(header, payload)
      finally:
        done.set_result(None)

  def _apply(self, header: channel.Header, payload: bytes) -> None:
    """Applies in order; answers once the change's models load (or fail).

    Only applying holds this thread: the wait is a monitor notification, so
    a config whose model never gets a version delays no later apply. The
    supervisor bounds the wait and sends cancel_apply past it. Right after
    applying it says whether the change is in force here, which settles the
    supervisor's record of the model set in the order changes were sent.
    """
    call_id = header["id"]
    core = self._core
    before = core.config
    try:
      wait = self._change(core, header, payload)
    except Exception as exc:  # pylint: disable=broad-except
      self._send({"type": "accepted", "id": call_id, "in_force": False})
      self._answer_apply(call_id, True, False, exc)
      return
    self._send({"type": "accepted", "id": call_id, "in_force": True})
    # A polled --model_config_file comes back every period unchanged.
    changed = core.config != before
    with self._waits_lock:
      self._waits[call_id] = wait
    wait.future.add_done_callback(
        lambda f: self._applied(call_id, changed, True, f)
    )

  @staticmethod
  def _change(
      core: server_core_lib.ServerCore, header: channel.Header, payload: bytes
  ) -> server_core_lib.ConfigWait | server_core_lib.UnloadWait:
    op = header.get("op", config_broadcast.CONFIG)
    if op == config_broadcast.LOAD:
      return core.apply_model_load(ModelConfig.FromString(payload))
    if op == config_broadcast.UNLOAD:
      return core.apply_model_unload(header["name"])
    return core.apply_config(
        ModelServerConfig.FromString(payload),
        bool(header.get("keep_overrides")),
    )

  def _applied(
      self,
      call_id: int,
      changed: bool,
      in_force: bool,
      future: concurrent.futures.Future,
  ) -> None:
    with self._waits_lock:
      self._waits.pop(call_id, None)
      gave_up = self._gave_up.pop(call_id, None)
    error = gave_up if future.cancelled() else future.exception()
    self._answer_apply(call_id, changed, in_force, error)

  def _cancel_apply(self, call_id: int, timeout_s: float | None) -> None:
    with self._waits_lock:
      wait = self._waits.get(call_id)
      if wait is None:
        return
      error = wait.timed_out_error(timeout_s)
      self._gave_up[call_id] = error
    wait.future.cancel()

  def _answer_apply(
      self,
      call_id: int,
      changed: bool,
      in_force: bool,
      error: BaseException | None,
  ) -> None:
    code, message = status.Code.OK, ""
    if isinstance(error, status.ServingError):
      code, message = error.code, error.message
    elif error is not None:
      logging.error("Reloading the model config failed: %r", error)
      code, message = status.Code.INTERNAL, f"{type(error).__name__}: {error}"
    if changed or code != status.Code.OK:
      logging.info(
          "Model server worker %d applied a new model config: %s",
          self.index,
          message or "OK",
      )
    self._send(
        {
            "type": "applied",
            "id": call_id,
            "code": int(code),
            "message": message,
            # Whether this config is now the one in force (a validation error
            # leaves the previous one), so new workers start with it.
            "applied": in_force,
        }
    )

  def _pong(self, call_id: int) -> None:
    """Answers a health check from the event loop once it serves.

    So the answer says that the loop turns (a stalled or wedged loop gets
    the worker replaced); while loading, this thread answers for it.
    """
    reply = {"type": "pong", "id": call_id}
    loop = self._loop
    if loop is None:
      self._send(reply)
      return
    try:
      loop.call_soon_threadsafe(self._send, reply)
    except RuntimeError:
      pass  # The loop closed: the worker is stopping.

  def _answer_states(self, call_id: int, payload: bytes) -> None:
    core = self._core
    header: channel.Header = {"type": "states", "id": call_id, "code": 0}
    body = b""
    if core is None:
      header.update(code=int(status.Code.UNAVAILABLE), message="starting")
    else:
      request = get_model_status_pb2.GetModelStatusRequest.FromString(payload)
      try:
        body = get_model_status_impl.get_model_status(
            core.monitor, request
        ).SerializeToString()
      except status.ServingError as exc:
        header.update(code=int(exc.code), message=exc.message)
    self._send(header, body)


class _Management:
  """control_plane.ModelManagement over every worker, via the supervisor."""

  def __init__(self, context: WorkerContext):
    self._context = context

  async def reload_config(self, config: Any, timeout_s: float | None) -> None:
    # The supervisor bounds the wait itself; this bound only covers a
    # supervisor that stopped answering.
    header, _ = await self._context.call_async(
        {"type": "reload", "timeout_s": timeout_s},
        config.SerializeToString(),
        None if timeout_s is None else timeout_s + _CHANNEL_SLACK_S,
    )
    if header["code"]:
      raise status.ServingError(status.Code(header["code"]), header["message"])

  async def load_model(self, model: ModelConfig, timeout_s: float | None):
    await self._change(
        {"op": config_broadcast.LOAD, "name": model.name},
        model.SerializeToString(),
        timeout_s,
    )

  async def unload_model(self, name: str, timeout_s: float | None) -> None:
    await self._change(
        {"op": config_broadcast.UNLOAD, "name": name}, b"", timeout_s
    )

  async def _change(
      self, change: channel.Header, payload: bytes, timeout_s: float | None
  ) -> None:
    """Every worker applies it before this returns (or its error raises)."""
    # As reload_config: the supervisor bounds the wait itself.
    header, _ = await self._context.call_async(
        {"type": "reload", **change, "timeout_s": timeout_s},
        payload,
        None if timeout_s is None else timeout_s + _CHANNEL_SLACK_S,
    )
    if header["code"]:
      raise status.ServingError(status.Code(header["code"]), header["message"])

  async def get_model_status(
      self, request: get_model_status_pb2.GetModelStatusRequest
  ) -> get_model_status_pb2.GetModelStatusResponse:
    header, payload = await self._context.call_async(
        {"type": "status"}, request.SerializeToString(), _STATUS_TIMEOUT_S
    )
    parts = channel.split(header["sizes"], payload)
    return model_status.merge(
        [
            model_status.Reply(code, message, part)
            for (code, message), part in zip(header["replies"], parts)
        ]
    )


def share_of(total: int, count: int) -> int:
  """Threads a worker gets of `total` split between `count` workers."""
  return max(1, total // max(1, count))


def divide_thread_pools(flags, count: int) -> dict[str, int]:
  """Sizes the pools for 1/count of the CPUs, where no flag sized them.

  TensorFlow's default intra- and inter-op pools are one thread per CPU in
  every process, so N workers would run N times as many threads as cores.
  Flags the user gave (even =0), and values their
  --tensorflow_session_config_file sets, are left alone. Returns what it set.
  """
  cpus = os.cpu_count() or 1
  changed: dict[str, int] = {}
  if not any(flags[name].present for name in _PARALLELISM_FLAGS):
    from_file = config_pb2.ConfigProto()
    if flags.tensorflow_session_config_file:
      try:
        from_file = config_protos.parse_text_file(
            flags.tensorflow_session_config_file, config_pb2.ConfigProto
        )
      except (OSError, text_format.ParseError):
        pass  # from_flags reports it.
    if not from_file.intra_op_parallelism_threads:
      changed["tensorflow_intra_op_parallelism"] = share_of(cpus, count)
    if not from_file.inter_op_parallelism_threads:
      changed["tensorflow_inter_op_parallelism"] = share_of(cpus, count)
  if not flags["grpc_max_threads"].present:
    changed["grpc_max_threads"] = share_of(flags.grpc_max_threads, count)
  for name, value in changed.items():
    setattr(flags, name, value)
  return changed


def serve(flags) -> int:
  """main's path in a worker process; returns the exit code."""
  context = WorkerContext.from_environment()
  config, overrides = context.receive_hello()
  context.start()
  changed = divide_thread_pools(flags, context.count)
  try:
    core_options, server_opts = server_options.from_flags(flags)
  except server_options.FlagError as exc:
    # Every worker parses the same flags: one report is enough.
    if context.index == 0:
      server_options.start_failure(status.invalid_argument(str(exc)))
    return 1
  logging.info(
      "Model server worker %d of %d (pid %d)%s.",
      context.index,
      context.count,
      os.getpid(),
      "".join(f", --{k}={v}" for k, v in sorted(changed.items())),
  )
  if config is not None:
    core_options.model_server_config = config
  # What the per-model control API loaded or unloaded in the other workers.
  core_options.model_overrides = overrides
  server_opts.worker = context
  # One request-log file stream per worker, named after it.
  core_options.request_log_stream = f"worker{context.index}"
  # The supervisor re-reads --model_config_file for every worker.
  server_opts.model_config_file_poll_wait_seconds = 0
  metrics.set_exposition_source(
      metrics_view.MergedCollector(
          os.environ[environment.METRICS_DIR], lambda: metrics.get().registry
      )
  )
  return server_options.run(core_options, server_opts)
