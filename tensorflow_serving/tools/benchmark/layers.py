"""Which layer of the server a py-spy sample is in, and what each layer costs.

py-spy's raw output is one line per distinct stack, `frame;frame;... count`,
each frame `function (path/file.py:line)`, root first; with `--threads` the
root is `thread (tid): name`. A sample belongs to the layer of the frame
nearest the leaf that any rule matches, so numpy called from the JSON codec
counts as the codec, and TensorFlow called from a batch thread as the model
run. The rules match path fragments, so they survive modules moving between
packages (util/grpc_h2 or util/net/grpc_h2, json_tensor a module or a
package). A layer's cost is then CPU, not samples: each thread's CPU over
the recording (from /proc) is split as that thread's samples are, and the
native threads py-spy cannot see are placed by name (cpu_by_layer).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
import dataclasses
import re

# (layer, fragments of a frame's file path), tried in this order on each
# frame: a frame matching two rules (batching's metrics) takes the first.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model run (TensorFlow)", ("tensorflow/python/", "tensorflow/lite/")),
    ("metrics", ("prometheus", "util/metrics", "_metrics.py")),
    ("batching (queues, batch threads)", ("tensorflow_serving/batching/",)),
    ("HTTP/2 + gRPC transport", ("grpc_h2", "hpack/", "grpc/")),
    ("HTTP/1.1 transport", ("http_server.py", "http1", "httptools")),
    ("JSON codec", ("json_tensor", "simdjson", "orjson", "json/")),
    (
        "tensor codec (proto <-> numpy)",
        ("tensor_codec", "google/protobuf", "wire.py"),
    ),
    ("model runner, worker-pool hop", ("model_runner",)),
    (
        "API handlers (servicers, REST handler, predict)",
        (
            "tensorflow_serving/model_servers/",
            "tensorflow_serving/servables/",
            "tensorflow_serving/core/",
        ),
    ),
    ("event loop (asyncio, uvloop)", ("asyncio/", "uvloop")),
)
# Thread and lock plumbing decides only when no frame above matches a rule:
# a batch thread waiting in threading.Condition is batching, a pool worker
# in concurrent.futures with nothing of ours above it is the pool hop.
GENERIC_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "model runner, worker-pool hop",
        ("concurrent/futures", "threading.py", "queue.py"),
    ),
)
OTHER = "other"
# Leaves where a thread waits rather than works: the event loop polling in
# uvloop's C (no Python frame above Runner.run), a lock or condition wait,
# an idle pool worker. py-spy's idle detection misses many of these under
# load, so such samples are set aside: a thread's CPU is split over its
# working samples (and over these only if it has no others).
_IDLE_LEAF = re.compile(
    r"^(?:(?:Runner\.run|BaseEventLoop\.run_forever|.*run_until_complete|"
    r".*_run_once) \(asyncio/|(?:\w+\.)?wait \(threading\.py|"
    r"_worker \(concurrent/futures/thread\.py|(?:\w+\.)?get \(queue\.py|"
    r"(?:\w+\.)?select \(selectors\.py)"
)
# Threads py-spy cannot see (not Python threads), by name: their CPU goes to
# a layer by what they are. TensorFlow's own pools do the model's math.
NATIVE_THREADS = (
    ("tf_", "model run (TensorFlow)"),
    ("libuv", "event loop (asyncio, uvloop)"),
)
NATIVE_OTHER = "other native threads"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>\d+)\)(?::\s*(?P<name>.*))?$")


@dataclasses.dataclass
class Profile:
  """Working samples by layer and leaf function; all by thread group."""

  total: int = 0
  layers: collections.Counter[str] = dataclasses.field(
      default_factory=collections.Counter
  )
  threads: collections.Counter[str] = dataclasses.field(
      default_factory=collections.Counter
  )
  leaves: collections.Counter[str] = dataclasses.field(
      default_factory=collections.Counter
  )
  # Samples by layer of each thread (with --threads), keyed by thread id,
  # and the threads' Python names (the OS knows them all as the program).
  per_thread: dict[int, collections.Counter[str]] = dataclasses.field(
      default_factory=dict
  )
  # The same for the samples set aside as waiting (_IDLE_LEAF).
  per_thread_idle: dict[int, collections.Counter[str]] = dataclasses.field(
      default_factory=dict
  )
  idle: int = 0
  thread_names: dict[int, str] = dataclasses.field(default_factory=dict)


def layer_of(files: Sequence[str]) -> str:
  """The layer of a stack given its frames' files, root first."""
  for rules in (RULES, GENERIC_RULES):
    for file in reversed(files):
      for layer, fragments in rules:
        if any(fragment in file for fragment in fragments):
          return layer
  return OTHER


def thread_group(name: str) -> str:
  """Threads of one kind together: request_3 and request_7 are the pool."""
  return re.sub(r"[_-]?\d+$", "", name) or name


def parse(lines: Iterable[str]) -> Profile:
  """Reads py-spy `--format raw` output (with or without --threads)."""
  profile = Profile()
  for line in lines:
    line = line.rstrip("\n")
    stack, _, count = line.rpartition(" ")
    if not stack or not count.isdigit():
      continue
    samples = int(count)
    frames = stack.split(";")
    thread = "all"
    tid = 0
    match = _THREAD.match(frames[0])
    if match:
      thread = thread_group(match.group("name") or "unnamed")
      tid = int(match.group("tid"))
      profile.thread_names[tid] = match.group("name") or "unnamed"
      frames = frames[1:]
    files = []
    for frame in frames:
      parsed = _FRAME.match(frame)
      files.append(parsed.group("file") if parsed else frame)
    layer = layer_of(files)
    leaf = ""
    if frames:
      parsed = _FRAME.match(frames[-1])
      leaf = (
          f"{parsed.group('function')} ({parsed.group('file')})"
          if parsed
          else frames[-1]
      )
    profile.total += samples
    profile.threads[thread] += samples
    if _IDLE_LEAF.match(leaf):
      profile.idle += samples
      threads = profile.per_thread_idle
    else:
      profile.layers[layer] += samples
      profile.leaves[leaf] += samples
      threads = profile.per_thread
    threads.setdefault(tid, collections.Counter())[layer] += samples
  return profile


def cpu_by_thread_group(
    profile: Profile, thread_cpu: dict[int, tuple[str, float]]
) -> collections.Counter[str]:
  """CPU seconds per kind of thread: Python's names where py-spy saw them."""
  out: collections.Counter[str] = collections.Counter()
  for tid, (name, cpu) in thread_cpu.items():
    if cpu > 0:
      out[thread_group(profile.thread_names.get(tid, name))] += cpu
  return out


def native_layer(name: str) -> str:
  for prefix, layer in NATIVE_THREADS:
    if name.startswith(prefix):
      return layer
  return NATIVE_OTHER


def cpu_by_layer(
    profile: Profile, thread_cpu: dict[int, tuple[str, float]]
) -> collections.Counter[str]:
  """CPU seconds per layer: each thread's CPU split as its samples are.

  Weighting by each thread's measured CPU (from /proc, over the recording)
  rather than counting samples keeps a thread that py-spy saw as running
  while it only waited for a core (a busy host) from counting as CPU, and
  gives the native threads py-spy cannot see (TensorFlow's pools) their
  CPU, by name. Waiting samples count only for a thread with no others.
  """
  out: collections.Counter[str] = collections.Counter()
  for tid, (name, cpu) in thread_cpu.items():
    if cpu <= 0:
      continue
    samples = profile.per_thread.get(tid) or profile.per_thread_idle.get(tid)
    total = sum(samples.values()) if samples else 0
    if not total:
      out[native_layer(name)] += cpu
      continue
    for layer, n in samples.items():
      out[layer] += cpu * n / total
  return out


def table(
    cpu: collections.Counter[str], us_per_request: float | None
) -> list[str]:
  """Markdown rows: each layer's share of the CPU and us per request."""
  lines = [
      "| layer | share of the server's CPU | us per request |",
      "|---|---|---|",
  ]
  total = sum(cpu.values())
  for layer, seconds in cpu.most_common():
    share = seconds / total if total else 0.0
    us = "n/a" if us_per_request is None else f"{share * us_per_request:.0f}"
    lines.append(f"| {layer} | {100 * share:.1f}% | {us} |")
  return lines
