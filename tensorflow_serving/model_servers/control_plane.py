"""Config reloads and per-model loads and unloads, kept apart from the data
plane.

Upstream's HandleReloadConfigRequest holds a gRPC thread and ServerCore's
config mutex until every model the new config adds is AVAILABLE, with no
time limit: a config naming a base path with no version yet never returns,
and later reloads queue behind it. Here a reload has two steps:

- applying the config (validate, swap the version sources) is quick and runs
  on this module's one control thread, so reloads are applied one at a time,
  in the order they arrived, and never on a thread a request needs;
- waiting for the added models holds no thread and no lock: it is a
  monitor notification awaited on the event loop, bounded by the caller's
  deadline and by the server's maximum (--model_config_reload_timeout_seconds),
  and withdrawn when the caller gives up.

Past the bound the config stays in force (as upstream's would) and the
call ends with DEADLINE_EXCEEDED naming the models still awaited and why.

The per-model control API (the v2 repository's load and unload) takes the
same two steps, on the same thread and within the same bounds, so it is
ordered with reloads and never holds a thread while a model loads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import concurrent.futures
from typing import Any, Protocol

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.model_servers import server_core as server_core_lib

# The server's longest wait for a reload's models when the caller set no
# deadline (--model_config_reload_timeout_seconds; upstream has no bound).
DEFAULT_RELOAD_TIMEOUT_S = 600.0


class ModelManagement(Protocol):
  """ModelService's calls when they must span more than this process.

  model_servers/workers gives one to each of its worker processes, so that a
  reload, a model's load or unload reaches every worker before it returns,
  and a status answers for all of them. All are awaited on the event loop
  and must hold no thread while they wait.
  """

  async def reload_config(self, config: Any, timeout_s: float | None) -> None:
    ...

  async def load_model(
      self,
      model: model_server_config_pb2.ModelConfig,
      timeout_s: float | None,
  ) -> None:
    ...

  async def unload_model(self, name: str, timeout_s: float | None) -> None:
    ...

  async def get_model_status(
      self, request: get_model_status_pb2.GetModelStatusRequest
  ) -> get_model_status_pb2.GetModelStatusResponse:
    ...


def bound(
    caller_timeout_s: float | None, server_max_s: float | None
) -> float | None:
  """The tighter of the caller's deadline and the server's maximum."""
  bounds = [b for b in (caller_timeout_s, server_max_s) if b is not None]
  return min(bounds) if bounds else None


class Waitable(Protocol):
  """What applying a change returns: ServerCore's ConfigWait or UnloadWait."""

  future: concurrent.futures.Future

  def timed_out(self, timeout_s: float | None) -> Exception:
    ...


def _withdraw(applied: concurrent.futures.Future) -> None:
  if not applied.cancelled() and applied.exception() is None:
    applied.result().future.cancel()


class ControlPlane:
  """Config reloads for one server, off the request threads.

  Model status is read through model_view.ModelView, over the same
  ModelManagement when there are workers.
  """

  def __init__(
      self,
      core: server_core_lib.ServerCore,
      management: ModelManagement | None = None,
      reload_timeout_s: float | None = DEFAULT_RELOAD_TIMEOUT_S,
  ):
    self.core = core
    self._management = management
    self.reload_timeout_s = reload_timeout_s
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="control"
    )
    # Set by the server: why this process cannot serve now (None: it can),
    # for /v1/health/ready.
    self.ready_check: Callable[[], Awaitable[str | None]] | None = None

  async def reload_config(
      self, config: Any, timeout_s: float | None = None
  ) -> None:
    """HandleReloadConfigRequest's work, within min(timeout_s, the maximum)."""
    limit = bound(timeout_s, self.reload_timeout_s)
    if self._management is not None:
      await self._management.reload_config(config, limit)
      return
    await self.apply_and_wait(config, limit)

  async def apply_and_wait(
      self,
      config: Any,
      timeout_s: float | None,
      keep_model_overrides: bool = False,
  ) -> server_core_lib.ConfigWait:
    """Applies in order on the control thread, then awaits without one.

    `keep_model_overrides`: see ServerCore.apply_config (a polled file keeps
    what the per-model control API changed).
    """
    return await self._apply_then_await(
        lambda: self.core.apply_config(config, keep_model_overrides),
        timeout_s,
    )

  async def load_model(
      self,
      resolve: Callable[[], model_server_config_pb2.ModelConfig],
      timeout_s: float | None = None,
  ) -> None:
    """Serves the model `resolve()` names; returns once it is available.

    `resolve` (which may read the file system and this core's config) runs
    on the control thread. Bounded as reload_config; past the bound the
    model goes on loading.
    """
    limit = bound(timeout_s, self.reload_timeout_s)
    if self._management is not None:
      loop = asyncio.get_running_loop()
      start = loop.time()
      model = await asyncio.wrap_future(self._executor.submit(resolve))
      left = None if limit is None else max(0.0, limit - (loop.time() - start))
      await self._management.load_model(model, left)
      return
    await self._apply_then_await(
        lambda: self.core.apply_model_load(resolve()), limit
    )

  async def unload_model(
      self, name: str, timeout_s: float | None = None
  ) -> None:
    """Stops serving `name`; returns once every version has unloaded."""
    limit = bound(timeout_s, self.reload_timeout_s)
    if self._management is not None:
      await self._management.unload_model(name, limit)
      return
    await self._apply_then_await(
        lambda: self.core.apply_model_unload(name), limit
    )

  async def _apply_then_await(
      self, apply: Callable[[], Waitable], timeout_s: float | None
  ) -> Any:
    """Runs `apply` on the control thread, then awaits its wait's future."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    applied = self._executor.submit(apply)
    try:
      wait = await asyncio.wrap_future(applied)
    except asyncio.CancelledError:
      # The caller left while its config was being applied.
      applied.add_done_callback(_withdraw)
      raise
    remaining = None if timeout_s is None else timeout_s - (loop.time() - start)
    try:
      await asyncio.wait_for(
          asyncio.wrap_future(wait.future),
          None if remaining is None else max(0.0, remaining),
      )
    except TimeoutError:
      raise wait.timed_out(timeout_s) from None
    return wait

  def stop(self) -> None:
    """Drops applies not yet started; never waits for the one running."""
    self._executor.shutdown(wait=False, cancel_futures=True)
