"""Client load, server-log parsing and status polling for lifecycle tests.

The server is a black box here: what it did is read from replies, from
GetModelStatus and from its log, whose per-version lines follow upstream's
loader_harness ("Loading servable version {name: m version: 3}", ...).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
import contextlib
import dataclasses
import datetime
import gc
import os
import re
import threading
import time

import grpc

from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.model_servers.integration_test import test_models
from tensorflow_serving.test_util import binaries
from tensorflow_serving.test_util import model_server

MODEL = "m"
POLL_S = 1
ModelVersionStatus = get_model_status_pb2.ModelVersionStatus

# --- Server -------------------------------------------------------------------


def server_args(base_path: str, *extra: str) -> list[str]:
  """The flags every lifecycle test starts from: one model, a 1 s poll."""
  return [
      f"--model_name={MODEL}",
      f"--model_base_path={base_path}",
      f"--file_system_poll_wait_seconds={POLL_S}",
      *extra,
  ]


def start_server(args: Sequence[str]) -> model_server.ModelServer:
  """Starts the binary (gRPC only); under Bazel its log is kept as an output.

  Most assertions run on the log after the server stopped, so the log must
  outlive the test's temporary directory to explain a failure.
  """
  server = model_server.start_server(
      args,
      rest=False,
      log_dir=os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or None,
  )
  print(f"server log: {server.log_path}")
  return server


@contextlib.contextmanager
def serving(
    base_path: str, *extra: str, timeout_s: float = 120.0
) -> Iterator[model_server.ModelServer]:
  """The real binary serving `base_path`, stopped on exit."""
  server = start_server(server_args(base_path, *extra))
  try:
    server.wait_until_serving(timeout_s)
    yield server
  finally:
    server.stop()


def new_base_path() -> str:
  return os.path.join(binaries.test_tmpdir(), MODEL)


def wait_for(
    predicate: Callable[[], object],
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
):
  """Polls `predicate` until it returns something truthy; returns that."""
  deadline = time.monotonic() + timeout_s
  while True:
    value = predicate()
    if value:
      return value
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
    time.sleep(interval_s)


# --- Status -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  state: int  # ModelVersionStatus.State
  error_code: int
  error_message: str

  @property
  def state_name(self) -> str:
    return ModelVersionStatus.State.Name(self.state)


class StatusClient:
  """GetModelStatus over one reusable channel."""

  def __init__(self, address: str, model: str = MODEL):
    self._channel = grpc.insecure_channel(address)
    self._stub = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._model = model

  def versions(self) -> dict[int, VersionStatus]:
    """Every version the server reports; empty if it knows none (NOT_FOUND)."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = self._model
    try:
      response = self._stub.GetModelStatus(request, timeout=10)
    except grpc.RpcError as e:
      if e.code() == grpc.StatusCode.NOT_FOUND:
        return {}
      raise
    return {
        s.version: VersionStatus(
            s.state, s.status.error_code, s.status.error_message
        )
        for s in response.model_version_status
    }

  def state(self, version: int) -> int | None:
    status = self.versions().get(version)
    return None if status is None else status.state

  def close(self) -> None:
    self._channel.close()


# --- Client load --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
  """One Predict as the client saw it; `code` is "OK" on a correct answer."""

  start: float  # time.time()
  end: float
  latency_s: float
  version: int | None
  code: str
  message: str = ""

  @property
  def ok(self) -> bool:
    return self.code == "OK"


class ClientLoad:
  """Threads sending Predict(latest) back to back until stopped.

  Every reply is checked: y must equal x + the version the reply names, so a
  wrong or mislabelled answer counts as a failure like an RPC error does.
  Ends at `stop()`, or by itself after `max_requests` per thread or
  `max_seconds`, whichever comes first.
  """

  X = (1.0, 2.0, 3.0)

  def __init__(
      self,
      address: str,
      num_threads: int = 4,
      max_requests: int = 100_000,
      max_seconds: float = 300.0,
  ):
    self._address = address
    self._max_requests = max_requests
    self._max_seconds = max_seconds
    self._stop = threading.Event()
    self._lock = threading.Lock()
    self._results: list[Result] = []
    self._threads = [
        threading.Thread(target=self._run, name=f"client-{i}", daemon=True)
        for i in range(num_threads)
    ]

  def start(self) -> ClientLoad:
    # A full collection here rescans TensorFlow's ~300k objects with the GIL
    # held (~200 ms), which would show up as server latency. Freeze them.
    gc.collect()
    gc.freeze()
    for thread in self._threads:
      thread.start()
    return self

  def stop(self) -> list[Result]:
    self._stop.set()
    for thread in self._threads:
      thread.join(60)
    with self._lock:
      return sorted(self._results, key=lambda r: r.start)

  def __enter__(self) -> ClientLoad:
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()

  def results(self) -> list[Result]:
    with self._lock:
      return list(self._results)

  def first_served(self, version: int) -> float | None:
    """Wall time of the first correct reply from `version`, if any yet."""
    with self._lock:
      times = [r.end for r in self._results if r.ok and r.version == version]
    return min(times, default=None)

  def _run(self) -> None:
    request = test_models.predict_request(self.X)
    deadline = time.monotonic() + self._max_seconds
    with grpc.insecure_channel(self._address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for _ in range(self._max_requests):
        if self._stop.is_set() or time.monotonic() > deadline:
          break
        result = self._one(stub, request)
        with self._lock:
          self._results.append(result)

  def _one(self, stub, request) -> Result:
    start, t0 = time.time(), time.perf_counter()
    try:
      response = stub.Predict(request, timeout=30)
    except grpc.RpcError as e:
      latency = time.perf_counter() - t0
      return Result(
          start,
          start + latency,
          latency,
          None,
          e.code().name,
          e.details() or "",
      )
    latency = time.perf_counter() - t0
    version = response.model_spec.version.value
    y = list(response.outputs["y"].float_val)
    expected = [x + version for x in self.X]
    if y != expected:
      return Result(
          start,
          start + latency,
          latency,
          version,
          "WRONG_ANSWER",
          f"y={y}, expected {expected}",
      )
    return Result(start, start + latency, latency, version, "OK")


def version_regressions(
    results: Sequence[Result],
    order: Callable[[int], int] = lambda version: version,
) -> list[Result]:
  """Replies from a version that an earlier reply had already superseded.

  A request sent after another one's reply came back must not be answered by
  a version earlier in the swap sequence (`order`, ascending by default):
  once the serving map switched, it never switches back.
  """
  ok = [r for r in results if r.ok]
  by_end = sorted(ok, key=lambda r: r.end)
  regressions = []
  newest_seen, i = None, 0
  for result in sorted(ok, key=lambda r: r.start):
    while i < len(by_end) and by_end[i].end < result.start:
      rank = order(by_end[i].version)
      newest_seen = rank if newest_seen is None else max(newest_seen, rank)
      i += 1
    if newest_seen is not None and order(result.version) < newest_seen:
      regressions.append(result)
  return regressions


def percentile(values: Sequence[float], q: float) -> float:
  ordered = sorted(values)
  if not ordered:
    return float("nan")
  index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
  return ordered[index]


def failures(results: Sequence[Result]) -> list[Result]:
  return [r for r in results if not r.ok]


def summarize_failures(results: Sequence[Result], limit: int = 5) -> str:
  counts = collections.Counter((r.code, r.message) for r in failures(results))
  return "; ".join(
      f"{n} x {code}: {message}"
      for (code, message), n in counts.most_common(limit)
  )


# --- Server log ---------------------------------------------------------------

# absl's Python log prefix: "I1122 01:03:31.592067 140093788948160 x.py:12] ".
_LOG_LINE = re.compile(
    r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) +\d+ [^\]]+\] (.*)$"
)
_EVENT = re.compile(
    r"^(Approving load for|Loading|Successfully loaded|Quiescing|"
    r"Done quiescing|Unloading|Done unloading|Encountered an error for) "
    r"servable version \{name: (\S+) version: (-?\d+)\}"
)


@dataclasses.dataclass(frozen=True)
class LogEvent:
  time: float  # Epoch seconds, from the line's local-time stamp.
  kind: str  # "Loading", "Done unloading", ... as in the line.
  name: str
  version: int
  text: str


def _log_time(match: re.Match) -> float:
  month, day, hour, minute, second, micros = (
      int(g) for g in match.groups()[:6]
  )
  now = datetime.datetime.now()
  stamp = datetime.datetime(now.year, month, day, hour, minute, second, micros)
  if stamp - now > datetime.timedelta(days=1):  # Logged last year.
    stamp = stamp.replace(year=now.year - 1)
  return stamp.timestamp()


def lifecycle_events(log: str, name: str = MODEL) -> list[LogEvent]:
  """The per-version lifecycle lines of `name`, in log order."""
  events = []
  for line in log.splitlines():
    match = _LOG_LINE.match(line)
    if not match:
      continue
    message = match.group(7)
    event = _EVENT.match(message)
    if event and event.group(2) == name:
      events.append(
          LogEvent(
              _log_time(match),
              event.group(1),
              name,
              int(event.group(3)),
              message,
          )
      )
  return events


def max_versions_in_memory(events: Sequence[LogEvent]) -> tuple[int, list[int]]:
  """Most versions resident at once, and one moment's set that reached it.

  A version counts from "Loading" (its memory is being filled) until "Done
  unloading" or an error; that is when upstream's budget holds it too.
  """
  live: set[int] = set()
  peak: list[int] = []
  for event in events:
    if event.kind == "Loading":
      live.add(event.version)
      if len(live) > len(peak):
        peak = sorted(live)
    elif event.kind in ("Done unloading", "Encountered an error for"):
      live.discard(event.version)
  return len(peak), peak


def event_time(
    events: Sequence[LogEvent], kind: str, version: int
) -> float | None:
  for event in events:
    if event.kind == kind and event.version == version:
      return event.time
  return None


def load_seconds(events: Sequence[LogEvent], version: int) -> float | None:
  """From "Loading" to "Successfully loaded" of `version`, per the log."""
  start = event_time(events, "Loading", version)
  end = event_time(events, "Successfully loaded", version)
  return None if start is None or end is None else end - start


class StatusSampler:
  """Polls GetModelStatus in a thread; records the most versions held at once.

  A cross-check of the log: it can miss short states, never invent them.
  """

  HELD = (
      ModelVersionStatus.LOADING,
      ModelVersionStatus.AVAILABLE,
      ModelVersionStatus.UNLOADING,
  )

  def __init__(self, address: str, interval_s: float = 0.1):
    self._client = StatusClient(address)
    self._interval_s = interval_s
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=self._run, name="status-sampler", daemon=True
    )
    self.samples = 0
    self.max_held = 0
    self.max_held_versions: list[int] = []

  def __enter__(self) -> StatusSampler:
    self._thread.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self._stop.set()
    self._thread.join(30)
    self._client.close()

  def _run(self) -> None:
    while not self._stop.wait(self._interval_s):
      try:
        versions = self._client.versions()
      except grpc.RpcError:
        continue
      held = sorted(v for v, s in versions.items() if s.state in self.HELD)
      self.samples += 1
      if len(held) > self.max_held:
        self.max_held, self.max_held_versions = len(held), held
