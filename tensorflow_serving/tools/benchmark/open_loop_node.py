"""Runs open_loop_gen.js (Node.js) and sums up what each call got.

The generator writes one line per call (when it was due, how late it left,
its latency from when it was due, its outcome); everything judged from those
lines is here, so the schedule and the counting are tested without Node
timing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import dataclasses
import json
import os
import shutil
import struct
import subprocess

from tensorflow_serving.tools.benchmark import stats

GEN_SCRIPT = "tensorflow_serving/tools/benchmark/open_loop_gen.js"

OK = "ok"
SHED = "shed"  # UNAVAILABLE / 503 with a retry hint
SHED_NO_HINT = "shed_nohint"
DEADLINE = "deadline"  # the server said DEADLINE_EXCEEDED / 504 / 408
TIMEOUT = "timeout"  # the client's deadline passed with no answer
# Not sent: every connection had all the streams the server allows open.
CLIENT_FULL = "client_full"
# A call that left more than this after it was due means the client fell
# behind its schedule: the load it offered was less than it says.
LATE_SEND_US = 10_000
# A run whose client fell behind on more than this share of calls is not a
# measurement of the offered rate.
MAX_LATE_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class Record:
  due_us: int  # from the start of the schedule
  lag_us: int  # how late it left after it was due
  latency_us: int  # from due to its answer (or giving up)
  outcome: str


@dataclasses.dataclass(frozen=True)
class Level:
  """What one rate (or one closed loop) gave."""

  offered_per_s: float
  duration_s: float
  sent: int
  ok: int  # answered OK within the deadline
  ok_late: int  # answered OK after the deadline (not goodput)
  shed: int
  shed_no_hint: int
  timed_out: int  # the server's deadline answer or the client's timeout
  errors: dict[str, int]
  late_sent: int  # calls the client itself sent late (or could not send)
  max_lag_ms: float
  goodput_per_s: float
  latency_ms: dict[str, float] | None  # of the calls answered OK in time
  client_cpu_s: float = 0.0

  @property
  def valid(self) -> bool:
    """False when the client could not keep its own schedule."""
    return self.late_sent <= MAX_LATE_SHARE * max(1, self.sent)


def parse_records(lines: Iterable[str]) -> list[Record]:
  records = []
  for line in lines:
    fields = line.split()
    if not fields:
      continue
    if len(fields) != 4:
      raise ValueError(f"bad record line {line!r}")
    records.append(
        Record(int(fields[0]), int(fields[1]), int(fields[2]), fields[3])
    )
  return records


def schedule_us(rate_per_s: float, duration_s: float) -> list[int]:
  """When each call of an open-loop level is due (what the generator does)."""
  count = max(1, round(rate_per_s * duration_s))
  step = 1e6 / rate_per_s
  return [round(i * step) for i in range(count)]


def summarize(
    records: Sequence[Record],
    offered_per_s: float,
    duration_s: float,
    deadline_ms: float,
    client_cpu_s: float = 0.0,
) -> Level:
  """Counts outcomes; goodput is OK answers within the deadline per second.

  `deadline_ms` 0 (a closed loop without deadlines) counts every OK.
  """
  deadline_us = deadline_ms * 1000 if deadline_ms else float("inf")
  ok_latencies = []
  ok_late = shed = shed_no_hint = timed_out = 0
  errors: dict[str, int] = {}
  for r in records:
    if r.outcome == OK:
      if r.latency_us <= deadline_us:
        ok_latencies.append(r.latency_us / 1e6)
      else:
        ok_late += 1
    elif r.outcome == SHED:
      shed += 1
    elif r.outcome == SHED_NO_HINT:
      shed_no_hint += 1
    elif r.outcome in (DEADLINE, TIMEOUT):
      timed_out += 1
    else:
      errors[r.outcome] = errors.get(r.outcome, 0) + 1
  late_sent = sum(
      1 for r in records if r.lag_us > LATE_SEND_US or r.outcome == CLIENT_FULL
  )
  return Level(
      offered_per_s=offered_per_s,
      duration_s=duration_s,
      sent=len(records),
      ok=len(ok_latencies),
      ok_late=ok_late,
      shed=shed,
      shed_no_hint=shed_no_hint,
      timed_out=timed_out,
      errors=errors,
      late_sent=late_sent,
      max_lag_ms=max((r.lag_us for r in records), default=0) / 1000,
      goodput_per_s=len(ok_latencies) / duration_s,
      latency_ms=stats.latency_ms(sorted(ok_latencies)),
      client_cpu_s=client_cpu_s,
  )


def write_bodies(path: str, bodies: Sequence[bytes]) -> None:
  """The generator's body file: each a 4-byte big-endian length + bytes."""
  with open(path, "wb") as f:
    for body in bodies:
      f.write(struct.pack(">I", len(body)))
      f.write(body)


def grpc_frame(message: bytes) -> bytes:
  """A gRPC length-prefixed message (uncompressed)."""
  return b"\x00" + struct.pack(">I", len(message)) + message


def node_binary() -> str:
  found = shutil.which("node")
  if not found:
    raise RuntimeError("node (Node.js) is needed for the open-loop generator")
  return found


def script_path() -> str:
  """open_loop_gen.js from the runfiles, or from the source tree."""
  from tensorflow_serving.test_util import binaries  # pylint: disable=g-import-not-at-top

  root = binaries.runfiles_root()
  if root:
    path = os.path.join(root, binaries.WORKSPACE_NAME, GEN_SCRIPT)
    if os.path.isfile(path):
      return path
  return os.path.join(binaries.repo_root(), GEN_SCRIPT)


@dataclasses.dataclass(frozen=True)
class Target:
  protocol: str  # "grpc" or "rest"
  host: str
  port: int
  path: str
  bodies_file: str
  connections: int


def run(
    target: Target,
    work_path: str,
    *,
    mode: str,
    duration_s: float,
    deadline_ms: float,
    rate_per_s: float = 0.0,
    concurrency: int = 0,
    warmup_s: float = 0.0,
    timeout_s: float | None = None,
) -> Level:
  """Runs the generator once; `work_path` prefixes its config and records."""
  config = {
      "protocol": target.protocol,
      "host": target.host,
      "port": target.port,
      "path": target.path,
      "bodies": target.bodies_file,
      "connections": target.connections,
      "mode": mode,
      "rate": rate_per_s,
      "duration_s": duration_s,
      "concurrency": concurrency,
      "warmup_s": warmup_s,
      "deadline_ms": deadline_ms,
      "records": work_path + ".records",
  }
  with open(work_path + ".json", "w", encoding="utf-8") as f:
    json.dump(config, f)
  done = subprocess.run(
      [node_binary(), script_path(), work_path + ".json"],
      capture_output=True,
      text=True,
      timeout=timeout_s or (warmup_s + duration_s + deadline_ms / 1000 + 60),
      check=False,
  )
  if done.returncode != 0:
    raise RuntimeError(
        f"open_loop_gen.js exited with {done.returncode}: {done.stderr[-2000:]}"
    )
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  with open(config["records"], encoding="utf-8") as f:
    records = parse_records(f)
  offered = rate_per_s if mode == "open" else 0.0
  return summarize(records, offered, duration_s, deadline_ms, summary["cpu_s"])
