"""The load generator behind load_test: picks the client and runs it.

Clients (load_config.CLIENTS): the ones users measure with (the official
grpcio client and h2load for gRPC, wrk for REST; see grpcio_client, h2load,
wrk) and the project's light asyncio clients (clients.py). Python clients
run on the closed loop in one or more worker processes; the C ones are
driven as subprocesses. Whatever the client, the result is one summary
(stats.summarize).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import dataclasses
import multiprocessing
import time
from typing import Any

from tensorflow_serving.tools.benchmark import clients
from tensorflow_serving.tools.benchmark import closed_loop
from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload as workload_lib
from tensorflow_serving.tools.benchmark import wrk

AsyncClient = Callable[..., Awaitable[None]]


def _async_client(config: load_config.LoadConfig) -> AsyncClient:
  if config.client_name == "grpcio_aio":
    # Imported only when used: it loads TensorFlow (for its protos).
    from tensorflow_serving.tools.benchmark import grpcio_client  # pylint: disable=g-import-not-at-top

    return grpcio_client.run_aio
  return {
      ("grpc", "raw"): clients.run_grpc_raw,
      ("rest", "raw"): clients.run_rest_raw,
      ("rest", "aiohttp"): clients.run_rest_aiohttp,
  }[(config.protocol, config.client_name)]


def run_worker(
    config: load_config.LoadConfig,
    worker: int = 0,
    barrier: Any | None = None,
    on_measure: Callable[[], None] | None = None,
) -> stats.WorkerResult:
  """One worker's share of the streams, on its own event loop (or threads)."""
  work = workload_lib.build_workload(config)
  window = closed_loop.Window(
      config.duration_s,
      _share(config.max_requests, config.processes, worker),
      config.server_pid if worker == 0 else 0,
      sample_host=worker == 0,
  )
  if on_measure is not None:
    window.on_open(on_measure)
  streams = config.streams_of(worker)
  if config.client_name == "grpcio":
    from tensorflow_serving.tools.benchmark import grpcio_client  # pylint: disable=g-import-not-at-top

    grpcio_client.run_futures(config, work, window, streams)
    return window.result()
  run = _async_client(config)

  async def main() -> None:
    if barrier is not None:
      loop = asyncio.get_running_loop()
      await loop.run_in_executor(None, barrier.wait, 60)
    await run(config, work, window, streams, worker, config.processes)

  loop = closed_loop.new_event_loop(config)
  try:
    loop.run_until_complete(main())
  finally:
    loop.close()
  return window.result()


def _share(total: int, parts: int, index: int) -> int:
  if not total:
    return 0
  return total // parts + (1 if index < total % parts else 0)


def _worker_process(
    config: load_config.LoadConfig, worker: int, barrier: Any, results: Any
) -> None:
  try:
    results.put((worker, run_worker(config, worker, barrier)))
  except BaseException as exc:  # pylint: disable=broad-except
    barrier.abort()
    results.put((worker, f"{type(exc).__name__}: {exc}"))


def run_processes(
    config: load_config.LoadConfig,
    on_measure: Callable[[], None] | None = None,
) -> list[stats.WorkerResult]:
  """Runs the workers: in this process when there is one, else spawned.

  `on_measure` is called as the measurement starts (one worker only).
  """
  if config.processes == 1:
    return [run_worker(config, on_measure=on_measure)]
  context = multiprocessing.get_context("spawn")
  barrier = context.Barrier(config.processes)
  results = context.Queue()
  procs = [
      context.Process(
          target=_worker_process,
          args=(config, worker, barrier, results),
          daemon=True,
      )
      for worker in range(config.processes)
  ]
  for proc in procs:
    proc.start()
  collected: dict[int, stats.WorkerResult] = {}
  failures = []
  deadline = (
      time.monotonic()
      + 120
      + config.warmup_s
      + config.duration_s
      + closed_loop.DRAIN_S
  )
  try:
    while len(collected) + len(failures) < len(procs):
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        raise TimeoutError("load-generator workers did not finish in time")
      try:
        worker, result = results.get(timeout=min(remaining, 1.0))
      except Exception:  # pylint: disable=broad-except
        if not any(p.is_alive() for p in procs):
          raise RuntimeError(
              "load-generator workers died without a result"
          ) from None
        continue
      if isinstance(result, str):
        failures.append(f"worker {worker}: {result}")
      else:
        collected[worker] = result
  finally:
    for proc in procs:
      proc.join(timeout=5)
      if proc.is_alive():
        proc.kill()
        proc.join()
  if failures:
    raise RuntimeError("; ".join(failures))
  return [collected[w] for w in sorted(collected)]


def run(
    config: load_config.LoadConfig,
    on_measure: Callable[[], None] | None = None,
) -> dict[str, Any]:
  """Runs the whole test; returns the summary (see stats.summarize).

  `on_measure`, if given, is called when the measured window starts (after
  the warmup), e.g. to start a profiler.
  """
  config.validate()
  if config.client_name == "wrk":
    summary = wrk.run(config, on_measure)
  elif config.client_name == "h2load":
    from tensorflow_serving.tools.benchmark import h2load  # pylint: disable=g-import-not-at-top

    summary = h2load.run(config, on_measure)
  else:
    summary = stats.aggregate(run_processes(config, on_measure))
  summary["config"] = dataclasses.asdict(config)
  summary["client"] = config.client_name
  return summary
