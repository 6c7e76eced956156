r"""Open-loop load: Predict calls at fixed arrival rates, goodput and p99.

A closed loop (load_test) waits for each answer before the next call, so it
never offers a server more than it takes; overload needs arrivals that do
not wait. This sends one MNIST image per call at each --rates level for
--duration seconds, every call with a --deadline_ms deadline (gRPC's
grpc-timeout; REST's client timeout, so start the server with
--rest_api_timeout_in_ms equal to it), and reports per level: the rate
offered, goodput (answers within the deadline, per second), calls refused
early (UNAVAILABLE / 503), calls that ran out of time (DEADLINE_EXCEEDED,
504, or the client's own timeout), other errors, and the latency of the
answered ones (p50, p99).

  python -m tensorflow_serving.tools.benchmark.open_loop \
      --server=127.0.0.1:8500 --protocol=grpc --rates=200,400,1000 \
      --deadline_ms=1000 --duration=10 --mnist_dir=/tmp/mnist

Run the closed loop first to find the capacity C, then offer 1x, 2x, 5x C.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import dataclasses
import json
import time
from typing import Any

from absl import app
from absl import flags

from tensorflow_serving.tools.benchmark import load_config
from tensorflow_serving.tools.benchmark import stats
from tensorflow_serving.tools.benchmark import workload as workload_lib

OK, REFUSED, LATE = "ok", "refused", "late"
# One call's outcome (OK, REFUSED, LATE or an error's name) and latency.
Outcome = tuple[str, float]
Send = Callable[[int], Awaitable[str]]


@dataclasses.dataclass(frozen=True)
class Level:
  """What one arrival rate gave."""

  offered_per_s: float
  sent: int
  outcomes: dict[str, int]
  goodput_per_s: float
  latency_ms: dict[str, float] | None  # of the answers within the deadline
  client_behind_s: float  # how late the last call left (a saturated client)


async def drive(
    send: Send,
    rate_per_s: float,
    duration_s: float,
    deadline_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Level:
  """Starts send(i) at start + i / rate for `duration_s`; waits for all.

  An answer later than `deadline_s` counts as LATE whatever it says.
  """
  outcomes: list[Outcome] = []
  count = max(1, round(rate_per_s * duration_s))
  start = clock()
  behind = 0.0

  async def one(index: int) -> None:
    began = clock()
    kind = await send(index)
    took = clock() - began
    if kind == OK and took > deadline_s:
      kind = LATE
    outcomes.append((kind, took))

  tasks = []
  for index in range(count):
    due = start + index / rate_per_s
    wait = due - clock()
    if wait > 0:
      await asyncio.sleep(wait)
    else:
      behind = -wait
    tasks.append(asyncio.create_task(one(index)))
  await asyncio.gather(*tasks)
  return summarize(outcomes, rate_per_s, duration_s, behind)


def summarize(
    outcomes: Sequence[Outcome],
    offered_per_s: float,
    duration_s: float,
    client_behind_s: float = 0.0,
) -> Level:
  counts: dict[str, int] = {}
  for kind, _ in outcomes:
    counts[kind] = counts.get(kind, 0) + 1
  answered = sorted(took for kind, took in outcomes if kind == OK)
  return Level(
      offered_per_s=offered_per_s,
      sent=len(outcomes),
      outcomes=counts,
      goodput_per_s=len(answered) / duration_s,
      latency_ms=stats.latency_ms(answered),
      client_behind_s=client_behind_s,
  )


def grpc_sender(
    config: load_config.LoadConfig,
    work: workload_lib.Workload,
    deadline_s: float,
) -> tuple[Send, Callable[[], Awaitable[None]]]:
  """Raw PredictRequest bytes on one grpc.aio channel (official client)."""
  import grpc  # pylint: disable=g-import-not-at-top

  channel = grpc.aio.insecure_channel(config.server)
  predict = channel.unary_unary(load_config.PREDICT_METHOD)
  check = workload_lib.Checker(config, work).grpc
  bodies = work.bodies

  async def send(index: int) -> str:
    slot = index % len(bodies)
    try:
      answer = await predict(bodies[slot], timeout=deadline_s)
    except grpc.aio.AioRpcError as exc:
      code = exc.code()
      if code == grpc.StatusCode.UNAVAILABLE:
        return REFUSED
      if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return LATE
      return code.name
    return check(slot, answer) or OK

  return send, channel.close


def rest_sender(
    config: load_config.LoadConfig,
    work: workload_lib.Workload,
    deadline_s: float,
    max_connections: int,
) -> tuple[Send, Callable[[], Awaitable[None]]]:
  """JSON bodies over aiohttp, up to `max_connections` at once."""
  import aiohttp  # pylint: disable=g-import-not-at-top

  session = aiohttp.ClientSession(
      connector=aiohttp.TCPConnector(limit=max_connections),
      timeout=aiohttp.ClientTimeout(total=deadline_s),
  )
  url = f"http://{config.server}{config.rest_path}"
  check = workload_lib.Checker(config, work).rest
  bodies = work.bodies

  async def send(index: int) -> str:
    slot = index % len(bodies)
    try:
      async with session.post(url, data=bodies[slot]) as response:
        body = await response.read()
        status = response.status
    except TimeoutError:
      return LATE
    except aiohttp.ClientError as exc:
      return type(exc).__name__
    if status == 503:
      return REFUSED
    if status in (408, 504):
      return LATE
    if status != 200:
      return f"HTTP {status}"
    return check(slot, body) or OK

  return send, session.close


flags.DEFINE_string("server", "127.0.0.1:8500", "host:port to load.")
flags.DEFINE_enum("protocol", "grpc", load_config.PROTOCOLS, "API to call.")
flags.DEFINE_list("rates", ["100"], "Arrival rates (calls/s), one level each.")
flags.DEFINE_float("duration", 10.0, "Seconds of arrivals per level.")
flags.DEFINE_float("deadline_ms", 1000.0, "Each call's deadline.")
flags.DEFINE_float("pause", 2.0, "Seconds between levels (queues drain).")
flags.DEFINE_integer(
    "max_connections", 2000, "REST: connections open at most at once."
)
flags.DEFINE_string("model_name", "mnist", "Model to call.")
flags.DEFINE_string("signature_name", "predict_images", "Signature to call.")
flags.DEFINE_string("input_name", "images", "Input tensor of the signature.")
flags.DEFINE_string("output_name", "scores", "Output every response must hold.")
flags.DEFINE_string("mnist_dir", "/tmp", "Where the MNIST test set is.")
flags.DEFINE_integer("num_images", 100, "Distinct images sent (0: all).")


async def _run(config: load_config.LoadConfig, rates: list[float]) -> list:
  work = workload_lib.build_workload(config)
  deadline_s = flags.FLAGS.deadline_ms / 1000.0
  if config.protocol == "grpc":
    send, close = grpc_sender(config, work, deadline_s)
  else:
    send, close = rest_sender(
        config, work, deadline_s, flags.FLAGS.max_connections
    )
  levels = []
  try:
    for rate in rates:
      level = await drive(send, rate, flags.FLAGS.duration, deadline_s)
      levels.append(level)
      print(json.dumps(dataclasses.asdict(level)), flush=True)
      await asyncio.sleep(flags.FLAGS.pause)
  finally:
    await close()
  return levels


def main(argv: Sequence[str]) -> Any:
  del argv
  f = flags.FLAGS
  config = load_config.LoadConfig(
      server=f.server,
      protocol=f.protocol,
      model_name=f.model_name,
      signature_name=f.signature_name,
      input_name=f.input_name,
      output_name=f.output_name,
      mnist_dir=f.mnist_dir,
      num_images=f.num_images,
  )
  levels = asyncio.run(_run(config, [float(r) for r in f.rates]))
  print("| offered/s | goodput/s | refused | late | other | p50 ms | p99 ms |")
  print("|---|---|---|---|---|---|---|")
  for level in levels:
    other = level.sent - sum(
        level.outcomes.get(k, 0) for k in (OK, REFUSED, LATE)
    )
    lat = level.latency_ms or {}
    print(
        f"| {level.offered_per_s:.0f} | {level.goodput_per_s:.0f} |"
        f" {level.outcomes.get(REFUSED, 0)} | {level.outcomes.get(LATE, 0)} |"
        f" {other} | {lat.get('p50', float('nan')):.1f} |"
        f" {lat.get('p99', float('nan')):.1f} |"
    )


if __name__ == "__main__":
  app.run(main)
