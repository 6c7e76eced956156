"""CPU probes read from /proc: this process, the server under test, the host.

A load test on a small shared host is only as good as what it can say about
the CPU: the server's (per request, and per thread), the generator's own
(CPU it took from the server), other processes', and the hypervisor's steal
(CPU this VM did not get at all).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import os
import resource


def self_cpu_s() -> float:
  """User + system CPU of this process, all threads included."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
  """User + system CPU of this process's waited-for children."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def process_tree_cpu_s(pid: int) -> float | None:
  """CPU seconds of `pid` and its live descendants, from /proc; None if gone.

  Descendants count because a launcher may run the real server as a child.
  """
  ticks = os.sysconf("SC_CLK_TCK")
  total = 0
  seen = set()
  todo = [pid]
  while todo:
    current = todo.pop()
    if current in seen:
      continue
    seen.add(current)
    try:
      with open(f"/proc/{current}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
      # Fields 14 and 15 of proc(5), counted from `state` (field 3).
      total += int(fields[11]) + int(fields[12])
      for task in os.listdir(f"/proc/{current}/task"):
        with open(f"/proc/{current}/task/{task}/children", "rb") as f:
          todo.extend(int(child) for child in f.read().split())
    except (OSError, IndexError, ValueError):
      if current == pid:
        return None
  return total / ticks


def thread_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
  """{tid: (thread name, CPU seconds)} for the threads of `pid`."""
  ticks = os.sysconf("SC_CLK_TCK")
  out = {}
  try:
    tids = os.listdir(f"/proc/{pid}/task")
  except OSError:
    return out
  for tid in tids:
    try:
      with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
        raw = f.read()
    except OSError:
      continue
    name = raw[raw.find(b"(") + 1 : raw.rfind(b")")].decode(errors="replace")
    fields = raw.rsplit(b")", 1)[1].split()
    out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
  return out


def host_cpu_ticks() -> list[int] | None:
  """The aggregate `cpu` line of /proc/stat (user, nice, system, idle, ...)."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      return [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None


def host_cpu_split(
    before: Sequence[int], after: Sequence[int]
) -> dict[str, float]:
  """Busy, idle and steal between two samples, in % of one core.

  Steal is time the hypervisor gave this VM's CPUs to someone else: when it
  is high, every absolute number of the run is depressed and noisy.
  """
  delta = [b - a for a, b in zip(before, after)]
  total = sum(delta[:8]) or 1
  idle = delta[3] + delta[4]  # idle + iowait
  steal = delta[7] if len(delta) > 7 else 0
  scale = 100 * (os.cpu_count() or 1) / total
  return {
      "busy_pct": scale * (total - idle - steal),
      "idle_pct": scale * idle,
      "steal_pct": scale * steal,
  }


class ResourceProbe:
  """CPU used between start() and stop(): ours, the server's, the host's."""

  def __init__(
      self,
      server_pid: int = 0,
      host: bool = True,
      own: Callable[[], float] = self_cpu_s,
  ):
    self._pid = server_pid
    self._host = host
    self._own = own
    self._own0 = 0.0
    self._server0: float | None = None
    self._threads0: dict[int, tuple[str, float]] = {}
    self._host0: list[int] | None = None

  def start(self) -> None:
    self._own0 = self._own()
    if self._pid:
      self._server0 = process_tree_cpu_s(self._pid)
      self._threads0 = thread_cpu_s(self._pid)
    if self._host:
      self._host0 = host_cpu_ticks()

  def stop(
      self,
  ) -> tuple[
      float,
      float | None,
      list[tuple[str, float]] | None,
      dict[str, float] | None,
  ]:
    """(own CPU s, server CPU s, server's top threads, host split)."""
    own = self._own() - self._own0
    server = threads = host = None
    if self._pid and self._server0 is not None:
      now = process_tree_cpu_s(self._pid)
      server = None if now is None else now - self._server0
      busy = []
      for tid, (name, cpu) in thread_cpu_s(self._pid).items():
        busy.append((cpu - self._threads0.get(tid, (name, 0.0))[1], name))
      threads = [(name, cpu) for cpu, name in sorted(busy, reverse=True)[:3]]
    if self._host0 is not None:
      now_ticks = host_cpu_ticks()
      if now_ticks is not None:
        host = host_cpu_split(self._host0, now_ticks)
    return own, server, threads, host
